"""PA-MPJPE's Procrustes (pytorch3d's corresponding_points_alignment) against a naive numpy Umeyama."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dl3d.metrics import pa_mpjpe, procrustes_align


def _umeyama(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """One frame, written out: pred (J, 3) aligned onto gt (J, 3) by s R x + t with det R = +1."""
    mp, mg = pred.mean(0), gt.mean(0)
    p, g = pred - mp, gt - mg
    u, sig, vt = np.linalg.svd(g.T @ p / len(p))  # covariance gt x pred
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / (p * p).sum(1).mean()
    return scale * p @ rot.T + mg


@pytest.mark.parametrize("seed", range(3))
def test_alignment_equals_umeyama(seed):
    rng = np.random.default_rng(seed)
    gt = rng.normal(0, 0.3, size=(6, 24, 3))
    pred = gt @ np.diag([1.0, 1.0, -1.0]) + rng.normal(0, 0.05, size=gt.shape)  # mirrored: R must stay proper
    pred[1] = rng.normal(0, 0.3, size=(24, 3))  # unrelated points
    aligned = procrustes_align(pred, gt)
    reference = np.stack([_umeyama(p, g) for p, g in zip(pred, gt)])
    np.testing.assert_allclose(aligned, reference, atol=1e-12)
    np.testing.assert_allclose(pa_mpjpe(pred, gt), np.linalg.norm(reference - gt, axis=-1).mean(-1), atol=1e-12)
    assert pa_mpjpe(pred, gt).min() > 0.03, "a mirrored body is not aligned away"


def test_collapsed_prediction_aligns_to_the_centroid():
    gt = np.random.default_rng(4).normal(0, 0.3, size=(1, 24, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch3d warns that the rotation is not unique
        aligned = procrustes_align(np.zeros_like(gt), gt)
        error = pa_mpjpe(np.zeros_like(gt), gt)
    np.testing.assert_allclose(aligned, np.broadcast_to(gt.mean(1, keepdims=True), gt.shape), atol=1e-12)
    np.testing.assert_allclose(error, np.linalg.norm(gt - gt.mean(1, keepdims=True), axis=-1).mean(-1), atol=1e-12)
