"""SMPLify priors: the GMM file format and its errors, the max-mixture formula, angle and shape priors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from dl3d.fitting.priors import (GmmPosePrior, GmmPriorError, angle_prior, builtin_pose_arrays, builtin_pose_prior,
                                 load_gmm_prior, shape_prior, write_gmm_file)


def random_gmm(k: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, 69, 69)) / math.sqrt(69)
    covars = 0.05 * (a @ a.transpose(0, 2, 1) + 0.5 * np.eye(69))
    return {"means": rng.normal(0, 0.2, size=(k, 69)), "covars": covars, "weights": rng.uniform(0.2, 1.0, size=k)}


def naive_max_mixture(x: np.ndarray, g: dict[str, np.ndarray]) -> np.ndarray:
    """SMPLify's MaxMixtureCompletePrior energy, written out with determinants and inverses."""
    sqrdets = np.array([math.sqrt(np.linalg.det(c)) for c in g["covars"]])
    c = g["weights"] / ((2 * math.pi) ** (69 / 2) * (sqrdets / sqrdets.min()))
    out = []
    for row in x:
        per = [0.5 * (row - m) @ np.linalg.inv(cov) @ (row - m) - math.log(ck)
               for m, cov, ck in zip(g["means"], g["covars"], c)]
        out.append(min(per))
    return np.array(out)


def test_gmm_file_round_trip_matches_naive_formula(tmp_path):
    g = random_gmm()
    path = write_gmm_file(tmp_path / "gmm_03.pkl", **g)
    with open(path, "rb") as f:
        raw = pickle.load(f, encoding="latin1")  # what SMPLify itself does
    assert sorted(raw) == ["covars", "means", "weights"] and raw["covars"].shape == (3, 69, 69)
    prior = load_gmm_prior(path)
    x = np.random.default_rng(1).normal(0, 0.3, size=(5, 69))
    got = prior(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, naive_max_mixture(x, g), rtol=1e-4)
    # At a component's mean, that component's Mahalanobis term is zero.
    at_mean = prior.component_nll(torch.as_tensor(g["means"][:1], dtype=torch.float64))[0, 0].item()
    assert at_mean == pytest.approx(prior.neg_log_c[0].item(), abs=1e-3)


def test_prior_gradient_points_to_the_mean():
    prior = builtin_pose_prior()
    pose = (prior.mixture_mean + 0.3).requires_grad_(True)
    prior(pose[None]).sum().backward()
    assert torch.all(pose.grad > 0)  # descending moves every coordinate back towards the mean


def test_wrong_shape_names_file_key_and_shapes(tmp_path):
    g = random_gmm(8)
    g["covars"] = g["covars"][:, :, :68]
    path = tmp_path / "gmm_08.pkl"
    with open(path, "wb") as f:
        pickle.dump(g, f, protocol=2)
    with pytest.raises(GmmPriorError, match=r"gmm_08\.pkl: key 'covars': expected shape \(8, 69, 69\), "
                                            r"found \(8, 69, 68\)"):
        load_gmm_prior(path)


def test_missing_key_garbled_and_missing_files(tmp_path):
    g = random_gmm(2)
    del g["weights"]
    path = tmp_path / "nokey.pkl"
    path.write_bytes(pickle.dumps(g, protocol=2))
    with pytest.raises(GmmPriorError, match=r"nokey\.pkl: key 'weights' missing"):
        load_gmm_prior(path)
    garbled = tmp_path / "garbled.pkl"
    garbled.write_bytes(b"\x80\x02}q\x00(X\x05\x00\x00\x00meansq")
    with pytest.raises(GmmPriorError, match=r"garbled\.pkl: not a readable GMM prior pickle"):
        load_gmm_prior(garbled)
    with pytest.raises(GmmPriorError, match=r"absent\.pkl: GMM prior file not found"):
        load_gmm_prior(tmp_path / "absent.pkl")
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(GmmPriorError, match=r"expected a dict with keys 'means', 'covars', 'weights', found a list"):
        load_gmm_prior(listed)
    assert issubclass(GmmPriorError, ValueError)


def test_file_holding_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"means": __import__("os").getcwd}))  # a global that is not numpy
    with pytest.raises(GmmPriorError, match="refusing to unpickle"):
        load_gmm_prior(path)


def test_not_positive_definite_and_bad_weights(tmp_path):
    g = random_gmm(2)
    g["covars"][1] = -np.eye(69)
    with pytest.raises(GmmPriorError, match=r"covars\[1\] is not"):
        write_gmm_file(tmp_path / "x.pkl", **g)
    g = random_gmm(2)
    g["weights"][0] = 0.0
    with pytest.raises(GmmPriorError, match="expected positive weights"):
        GmmPosePrior(**g)


def test_builtin_prior_is_one_hand_made_gaussian_and_says_so(tmp_path):
    prior = builtin_pose_prior()
    assert prior.num_components == 1
    assert "NOT SMPLify's CMU-trained prior" in builtin_pose_prior.__doc__
    assert "not CMU" in prior.source
    # Written to a file in SMPLify's format it loads back to the same energy.
    path = write_gmm_file(tmp_path / "builtin.pkl", **builtin_pose_arrays())
    x = torch.randn(4, 69) * 0.2
    torch.testing.assert_close(load_gmm_prior(path)(x), prior(x))
    # Energy at the mean: 69/2 log(2 pi) (the normalising constant SMPLify keeps).
    assert prior(prior.mixture_mean[None]).item() == pytest.approx(34.5 * math.log(2 * math.pi), rel=1e-5)


def test_prior_input_shape_error():
    with pytest.raises(ValueError, match=r"expected body_pose of shape \(N, 69\), got \(2, 72\)"):
        builtin_pose_prior()(torch.zeros(2, 72))


def test_angle_prior_penalises_unnatural_bends_only():
    zero = torch.zeros(1, 69)
    assert angle_prior(zero).item() == pytest.approx(4.0)
    natural = zero.clone()
    natural[0, 52], natural[0, 55], natural[0, 9], natural[0, 12] = -1.0, 1.0, 1.0, 1.0  # elbows, knees bent
    assert angle_prior(natural).item() == pytest.approx(4 * math.exp(-2.0), rel=1e-6)
    hyper = zero.clone()
    hyper[0, 9] = -0.5  # left knee bent backwards
    assert angle_prior(hyper).item() == pytest.approx(3 + math.exp(1.0), rel=1e-6)


def test_shape_prior_is_squared_norm():
    betas = torch.tensor([[3.0, 4.0] + [0.0] * 8, [0.0] * 10])
    torch.testing.assert_close(shape_prior(betas), torch.tensor([25.0, 0.0]))
