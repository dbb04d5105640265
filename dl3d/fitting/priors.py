"""SMPLify's priors: the max-mixture GMM pose prior, the elbow/knee angle prior, the shape prior.

The pose prior follows SMPLify's ``MaxMixtureCompletePrior`` (Bogo et al. 2016,
``lib/max_mixture_prior.py``; ported to torch as ``MaxMixturePrior`` in smplify-x and SPIN): for
each mixture component ``k`` with mean ``mu_k``, covariance ``C_k`` and weight ``w_k``,

    c_k = w_k / ((2 pi)^(D/2) * sqrt(det C_k) / min_j sqrt(det C_j))
    E(theta) = min_k [ 0.5 (theta - mu_k)^T C_k^-1 (theta - mu_k) - log c_k ]

(the sum over components replaced by the best one). The CMU-trained ``gmm_08.pkl`` is licensed and
not shipped: users pass its path to ``load_gmm_prior``; ``builtin_pose_prior`` is a hand-made
fallback, NOT the CMU prior.
"""

from __future__ import annotations

import math
import os
import pickle
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dl3d.body.legacy_pickle import load_restricted_pickle
from dl3d.data import fs as fsx

__all__ = [
    "ANGLE_PRIOR_INDICES",
    "ANGLE_PRIOR_SIGNS",
    "GmmPosePrior",
    "GmmPriorError",
    "angle_prior",
    "builtin_pose_prior",
    "load_gmm_prior",
    "shape_prior",
    "write_gmm_file",
]

POSE_DIM = 69
ANGLE_PRIOR_INDICES: tuple[int, ...] = (52, 55, 9, 12)
"""``body_pose`` (69,) entries of the left elbow y, right elbow y, left knee x, right knee x
(SMPLify's 55, 58, 12, 15 in the 72-vector that starts with the root)."""
ANGLE_PRIOR_SIGNS: tuple[float, ...] = (1.0, -1.0, -1.0, -1.0)
"""Sign making each bend's natural direction negative: elbows bend at -y (left) / +y (right),
knees at +x, so ``exp(sign * angle)`` grows only when a joint bends the unnatural way."""


class GmmPriorError(ValueError):
    """A GMM pose-prior file that is missing, unreadable or has the wrong content."""


class GmmPosePrior(nn.Module):
    """SMPLify's max-mixture Gaussian pose prior over the 69 body-pose parameters.

    means: (K, 69) float, axis-angle radians; covars: (K, 69, 69) float, symmetric positive
    definite; weights: (K,) float, positive. Buffers are float32; ``forward`` follows its input's
    dtype and device. ``source`` says where the prior came from.
    """

    def __init__(self, means: Any, covars: Any, weights: Any, source: str = "<arrays>") -> None:
        super().__init__()
        means, covars, weights = (np.asarray(a, dtype=np.float64) for a in (means, covars, weights))
        _check_gmm_arrays({"means": means, "covars": covars, "weights": weights}, source)
        chol = np.linalg.cholesky(np.linalg.inv(covars))  # precision = L L^T
        logdet = np.linalg.slogdet(covars)[1]
        neg_log_c = -np.log(weights) + 0.5 * POSE_DIM * math.log(2 * math.pi) + 0.5 * (logdet - logdet.min())
        self.source = source
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float32))
        self.register_buffer("prec_chol", torch.as_tensor(chol, dtype=torch.float32))
        self.register_buffer("neg_log_c", torch.as_tensor(neg_log_c, dtype=torch.float32))
        self.register_buffer("mixture_mean", torch.as_tensor(weights @ means / weights.sum(), dtype=torch.float32))

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    def component_nll(self, body_pose: Tensor) -> Tensor:
        """(N, 69) float -> (N, K) float: ``0.5 * Mahalanobis² - log c_k`` per component."""
        means, chol = self.means.to(body_pose), self.prec_chol.to(body_pose)
        if means.shape[0] == 1:  # one component: a plain matrix product
            z = ((body_pose - means[0]) @ chol[0])[:, None]
        else:
            z = torch.einsum("nkd,kde->nke", body_pose[:, None, :] - means[None], chol)  # L^T (x - mu)
        return 0.5 * (z * z).sum(-1) + self.neg_log_c.to(body_pose)

    def forward(self, body_pose: Tensor) -> Tensor:
        """Max-mixture negative log-likelihood.

        body_pose: (N, 69) float, axis-angle, radians.
        Returns (N,) float: the best component's ``0.5 * Mahalanobis² - log c_k`` (unitless).
        """
        if body_pose.dim() != 2 or body_pose.shape[1] != POSE_DIM:
            raise ValueError(f"expected body_pose of shape (N, {POSE_DIM}), got {tuple(body_pose.shape)}")
        nll = self.component_nll(body_pose)
        return nll[:, 0] if nll.shape[1] == 1 else nll.min(dim=1).values


def _check_gmm_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    means, covars, weights = arrays["means"], arrays["covars"], arrays["weights"]
    k = means.shape[0] if means.ndim == 2 else 8
    expected = {"means": (k, POSE_DIM), "covars": (k, POSE_DIM, POSE_DIM), "weights": (k,)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise GmmPriorError(f"{source}: key {key!r}: expected shape {shape}, found {arrays[key].shape}")
    for key in expected:
        if not np.isfinite(arrays[key]).all():
            raise GmmPriorError(f"{source}: key {key!r}: expected finite values, found NaN or inf")
    if (weights <= 0).any():
        raise GmmPriorError(f"{source}: key 'weights': expected positive weights, found {weights.tolist()}")
    for i, cov in enumerate(covars):
        if not np.allclose(cov, cov.T, rtol=1e-5, atol=1e-8):
            raise GmmPriorError(f"{source}: key 'covars': expected symmetric matrices, covars[{i}] is not")
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise GmmPriorError(f"{source}: key 'covars': expected positive definite matrices, "
                                f"covars[{i}] is not") from None


def load_gmm_prior(path: str | os.PathLike[str]) -> GmmPosePrior:
    """Read a GMM pose prior in SMPLify's ``gmm_08.pkl`` format from a local path or any fsspec URL.

    The file is a pickle (Python 2 pickles read with ``encoding="latin1"``) of a dict with
    ``'means'`` (K, 69), ``'covars'`` (K, 69, 69) and ``'weights'`` (K,) arrays (K = 8 for
    SMPLify's CMU prior); other keys are ignored.
    Raises ``GmmPriorError`` (a ValueError) naming the file, and the key with the expected and
    found shape, for a missing file, a garbled pickle, a missing key or a wrong shape.
    """
    source = os.fspath(path)
    try:
        data = fsx.read_asset(source, what="GMM prior file")
    except FileNotFoundError:
        raise GmmPriorError(f"{source}: GMM prior file not found (SMPLify's gmm_08.pkl comes with the "
                            "SMPLify download, https://smplify.is.tue.mpg.de)") from None
    except OSError as err:
        raise GmmPriorError(f"{source}: cannot read the GMM prior file ({err})") from err
    try:
        obj = load_restricted_pickle(data, holds="a GMM prior file holds numpy arrays")
    except Exception as err:  # any failure inside pickle means a damaged or foreign file
        raise GmmPriorError(f"{source}: not a readable GMM prior pickle ({type(err).__name__}: {err}); "
                            "expected a dict with 'means' (K, 69), 'covars' (K, 69, 69), 'weights' (K,)") from err
    if not isinstance(obj, dict):
        raise GmmPriorError(f"{source}: expected a dict with keys 'means', 'covars', 'weights', "
                            f"found a {type(obj).__name__}")
    arrays = {}
    for key in ("means", "covars", "weights"):
        if key not in obj:
            raise GmmPriorError(f"{source}: key {key!r} missing: expected keys 'means' (K, 69), "
                                f"'covars' (K, 69, 69), 'weights' (K,), found keys {sorted(map(str, obj))}")
        try:
            arrays[key] = np.asarray(obj[key], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise GmmPriorError(f"{source}: key {key!r}: expected a float array, found "
                                f"{type(obj[key]).__name__}") from err
    return GmmPosePrior(arrays["means"], arrays["covars"], arrays["weights"], source=source)


def write_gmm_file(path: str | os.PathLike[str], means: Any, covars: Any, weights: Any) -> str:
    """Write a GMM pose prior in SMPLify's ``gmm_08.pkl`` format (protocol-2 pickle of a dict).

    means: (K, 69), covars: (K, 69, 69), weights: (K,) float arrays (checked as ``load_gmm_prior``
    checks them) to a local path or any fsspec URL, whole or not at all. Returns ``path`` as a string.
    For tests and for priors users train themselves.
    """
    arrays = {"means": np.asarray(means, dtype=np.float64), "covars": np.asarray(covars, dtype=np.float64),
              "weights": np.asarray(weights, dtype=np.float64)}
    _check_gmm_arrays(arrays, "<arrays to write>")
    return fsx.write_file(path, pickle.dumps(arrays, protocol=2))


# Hand-chosen relaxed standing pose (mean) and spread (std) per joint and axis, radians.
# Joint order of body_pose: SMPL joints 1..23.
_BUILTIN_MEAN = {16: (0.0, 0.0, -1.2), 17: (0.0, 0.0, 1.2)}
_BUILTIN_STD = {
    1: (0.5, 0.25, 0.25), 2: (0.5, 0.25, 0.25), 3: (0.2, 0.15, 0.15), 4: (0.2, 0.08, 0.08), 5: (0.2, 0.08, 0.08),
    6: (0.15, 0.12, 0.12), 7: (0.25, 0.15, 0.15), 8: (0.25, 0.15, 0.15), 9: (0.15, 0.12, 0.12),
    10: (0.1, 0.1, 0.1), 11: (0.1, 0.1, 0.1), 12: (0.25, 0.25, 0.2), 13: (0.15, 0.15, 0.15),
    14: (0.15, 0.15, 0.15), 15: (0.3, 0.4, 0.2), 16: (0.5, 0.5, 0.5), 17: (0.5, 0.5, 0.5),
    18: (0.15, 0.25, 0.15), 19: (0.15, 0.25, 0.15), 20: (0.3, 0.3, 0.3), 21: (0.3, 0.3, 0.3),
    22: (0.15, 0.15, 0.15), 23: (0.15, 0.15, 0.15),
}


def builtin_pose_arrays() -> dict[str, np.ndarray]:
    """The arrays of ``builtin_pose_prior``: means (1, 69), covars (1, 69, 69), weights (1,)."""
    mean, std = np.zeros((24, 3)), np.zeros((24, 3))
    for j, v in _BUILTIN_MEAN.items():
        mean[j] = v
    for j, v in _BUILTIN_STD.items():
        std[j] = v
    return {"means": mean[1:].reshape(1, POSE_DIM), "covars": np.diag(std[1:].reshape(-1) ** 2)[None],
            "weights": np.ones(1)}


def builtin_pose_prior() -> GmmPosePrior:
    """A fallback pose prior for when no GMM file is given: NOT SMPLify's CMU-trained prior.

    It is a single Gaussian (K = 1) with a hand-chosen mean — a relaxed standing pose: arms
    lowered 1.2 rad from the T-pose, elbows and knees slightly bent — and a diagonal covariance
    whose per-joint, per-axis standard deviations (0.08 to 0.7 rad) were chosen by hand from
    typical human ranges of motion. It keeps fits plausible on synthetic data; for real footage
    load the CMU prior (``load_gmm_prior("gmm_08.pkl")``).
    """
    a = builtin_pose_arrays()
    return GmmPosePrior(a["means"], a["covars"], a["weights"], source="<builtin: single hand-made Gaussian, not CMU>")


def angle_prior(body_pose: Tensor) -> Tensor:
    """SMPLify's elbow/knee bending prior: ``sum exp(sign * angle)²`` over the four bends.

    body_pose: (N, 69) float, axis-angle, radians. Returns (N,) float (unitless, 4 at zero pose).
    Grows exponentially as an elbow or knee bends against its natural direction.
    """
    idx = torch.tensor(ANGLE_PRIOR_INDICES, device=body_pose.device)
    signs = body_pose.new_tensor(ANGLE_PRIOR_SIGNS)
    return torch.exp(body_pose.index_select(1, idx) * signs).pow(2).sum(-1)


def shape_prior(betas: Tensor) -> Tensor:
    """L2 shape prior: ``sum betas²``. betas: (N, B) float. Returns (N,) float."""
    return (betas * betas).sum(-1)
