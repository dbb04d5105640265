"""KID and FID against direct references written from their definitions (plain Python loops for the
MMD, the eigenvalues of S_r S_g for the Frechet trace), and the random-feature extractor's behaviour."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from dl3d.metrics.gan import RandomFeatures, fid, kid, mmd2_unbiased


def _k(a, b) -> float:
    return (sum(x * y for x, y in zip(a, b)) / len(a) + 1.0) ** 3


def _mmd2_reference(x: list, y: list) -> float:
    m = len(x)
    kxx = sum(_k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    kyy = sum(_k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    kxy = sum(_k(a, b) for a in x for b in y) / (m * m)
    return kxx + kyy - 2 * kxy


def test_unbiased_mmd_equals_the_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g, dtype=torch.float64) + 0.3
    assert abs(float(mmd2_unbiased(x, y)) - _mmd2_reference(x.tolist(), y.tolist())) < 1e-10


def test_kid_averages_disjoint_blocks_of_shuffled_sets():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(25, 4, generator=g), torch.randn(23, 4, generator=g) * 1.5
    mean, std = kid(real, fake, block_size=10, seed=3)
    perm = torch.Generator().manual_seed(3)
    pr, pf = torch.randperm(25, generator=perm), torch.randperm(23, generator=perm)
    vals = [_mmd2_reference(real[pr][i * 10:(i + 1) * 10].double().tolist(), fake[pf][i * 10:(i + 1) * 10].double().tolist())
            for i in range(2)]
    assert abs(mean - np.mean(vals)) < 1e-9 and abs(std - np.std(vals)) < 1e-9
    # one block when a set is smaller than the block size; too few vectors is an error
    one, zero_std = kid(real[:6], fake[:9], block_size=100)
    assert zero_std == 0.0 and np.isfinite(one)
    with pytest.raises(ValueError, match="at least 2 real and 2 generated"):
        kid(real[:1], fake)
    with pytest.raises(ValueError, match=r"expected features \(N, D\) and \(M, D\)"):
        kid(real, fake[:, :3])


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    same, _ = kid(a, b, block_size=100)
    shifted, _ = kid(a, b + 1.0, block_size=100)
    assert abs(same) < 0.05 and shifted > 10 * abs(same) and shifted > 0.3


def _fid_reference(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    eig = np.linalg.eigvals(s1 @ s2)  # tr sqrt(S1 S2) = sum of the square roots of its (real, >= 0) eigenvalues
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig.real, 0, None)).sum())


def test_fid_equals_the_eigenvalue_reference_and_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    y = rng.normal(size=(200, 6)) * 0.7 + 0.4
    assert abs(fid(torch.from_numpy(x), torch.from_numpy(y)) - _fid_reference(x, y)) < 1e-6 * max(1, _fid_reference(x, y))
    # two 1-D Gaussians: (mu1 - mu2)^2 + (s1 - s2)^2 on the sample statistics
    u, v = rng.normal(size=(1000, 1)), rng.normal(size=(1000, 1)) * 2 + 3
    closed = (u.mean() - v.mean()) ** 2 + (u.std(ddof=1) - v.std(ddof=1)) ** 2
    assert abs(fid(torch.from_numpy(u), torch.from_numpy(v)) - closed) < 1e-9
    assert abs(fid(torch.from_numpy(x), torch.from_numpy(x))) < 1e-6


def test_random_features_are_seeded_and_separate_image_sets():
    a, b = RandomFeatures(seed=0), RandomFeatures(seed=0)
    imgs = torch.rand(4, 3, 32, 32)
    assert torch.equal(a(imgs), b(imgs)) and a(imgs).shape == (4, a.dim) and a.dim == 448
    assert not torch.equal(RandomFeatures(seed=1)(imgs), a(imgs))
    g = torch.Generator().manual_seed(0)
    fa = [a(torch.rand(24, 3, 16, 16, generator=g) * 0.3) for _ in range(2)]  # two sets of dark noise
    fb = a(0.7 + torch.rand(24, 3, 16, 16, generator=g) * 0.3)  # bright noise
    near, _ = kid(fa[0], fa[1], block_size=24)
    far, _ = kid(fa[0], fb, block_size=24)
    assert far > 20 * max(abs(near), 1e-4)
    assert math.isfinite(fid(fa[0], fb)) and fid(fa[0], fb) > fid(fa[0], fa[1])


@pytest.mark.slow  # builds and saves a 24 M-parameter network (~100 MB)
def test_fid_inception_loads_a_pytorch_fid_layout_state_dict_and_rejects_others(tmp_path):
    from dl3d.metrics.fid_inception import fid_inception_v3, load_fid_inception

    torch.manual_seed(0)
    net = fid_inception_v3()
    state = net.state_dict()
    assert state["fc.weight"].shape == (1008, 2048) and "Mixed_7c.branch_pool.conv.weight" in state
    assert not any(k.startswith("AuxLogits") for k in state), "pytorch-fid's network has no aux classifier"
    torch.save(state, tmp_path / "fid.pth")
    feats = load_fid_inception(str(tmp_path / "fid.pth"))
    with torch.no_grad():
        out = feats(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 2048) and bool(torch.isfinite(out).all())
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="do not fit the FID Inception network"):
        load_fid_inception(str(tmp_path / "other.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth: not a readable torch file"):
        load_fid_inception(str(tmp_path / "junk.pth"))
    with pytest.raises(FileNotFoundError, match="Inception weights file not found"):
        load_fid_inception(str(tmp_path / "missing.pth"))
