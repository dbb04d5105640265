"""3D pose and 2D keypoint errors: MPJPE, PA-MPJPE, acceleration error, reprojection error.

All functions are batched and computed in torch float64. They take torch tensors or numpy arrays
and return the same kind as ``pred`` / ``pred_2d`` (numpy in, numpy out; torch in, torch out on the
input's device). Units follow the inputs: metres in, metres out; pixels in, pixels out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["acceleration_error", "mpjpe", "pa_mpjpe", "procrustes_align", "reprojection_error_px"]


def _as_tensor(x: Any, name: str, device: torch.device | None = None) -> Tensor:
    if torch.is_tensor(x):
        return x.detach().to(dtype=torch.float64, device=device or x.device)
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float64), device=device)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected {name} as a float array, got {type(x).__name__}") from exc


def _like(result: Tensor, ref: Any) -> Any:
    """``result`` as numpy when ``ref`` was not a tensor."""
    return result if torch.is_tensor(ref) else result.cpu().numpy()


def _check_pair(pred: Tensor, gt: Tensor, names: tuple[str, str] = ("pred", "gt")) -> None:
    if pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"expected {names[0]} of shape (N, J, 3), got {tuple(pred.shape)}")
    if gt.shape != pred.shape:
        raise ValueError(f"expected {names[1]} of shape {tuple(pred.shape)} like {names[0]}, got {tuple(gt.shape)}")


def mpjpe(pred: Any, gt: Any) -> Any:
    """Mean per-joint position error, per frame, without any alignment.

    pred: (N, J, 3) float, predicted joints, any frame shared with ``gt``, metres.
    gt: (N, J, 3) float, ground-truth joints, same frame and units.
    Returns (N,) float64, mean over joints of the Euclidean distance, metres.
    """
    p = _as_tensor(pred, "pred")
    g = _as_tensor(gt, "gt", p.device)
    _check_pair(p, g)
    return _like(torch.linalg.vector_norm(p - g, dim=-1).mean(-1), pred)


def procrustes_align(pred: Any, gt: Any) -> Any:
    """Per-frame similarity (scale, rotation, translation) alignment of ``pred`` onto ``gt``.

    ``pytorch3d.ops.corresponding_points_alignment(estimate_scale=True)`` (Umeyama's closed form, one
    SVD per frame, proper rotations only). pred: (N, J, 3) float; gt: (N, J, 3) float, same units.
    Returns (N, J, 3) float64: ``s * pred @ R + T`` with the least-squares ``s, R, T`` per frame.
    """
    from pytorch3d.ops import corresponding_points_alignment

    p = _as_tensor(pred, "pred")
    g = _as_tensor(gt, "gt", p.device)
    _check_pair(p, g)
    rot, transl, scale = corresponding_points_alignment(p, g, estimate_scale=True, allow_reflection=False)
    aligned = scale[:, None, None] * (p @ rot) + transl[:, None, :]
    return _like(aligned, pred)


def pa_mpjpe(pred: Any, gt: Any) -> Any:
    """MPJPE after per-frame Procrustes similarity alignment (``procrustes_align``).

    pred: (N, J, 3) float; gt: (N, J, 3) float, metres.
    Returns (N,) float64, metres. A scaled, rotated and translated copy of ``gt`` scores 0.
    """
    p = _as_tensor(pred, "pred")
    g = _as_tensor(gt, "gt", p.device)
    aligned = procrustes_align(p, g)
    return _like(torch.linalg.vector_norm(aligned - g, dim=-1).mean(-1), pred)


def acceleration_error(pred: Any, gt: Any) -> float:
    """Mean acceleration error of one sequence (the HMR/VIBE convention, without the mm factor).

    The acceleration of frame ``t`` is the second difference ``x[t+1] - 2 x[t] + x[t-1]``
    (metres per frame², frames assumed consecutive); the error is the norm of the difference of
    predicted and true accelerations, averaged over joints and over the F - 2 inner frames.
    pred: (F, J, 3) float, metres; gt: (F, J, 3) float, metres.
    Returns a Python float, metres / frame²; NaN when F < 3 (no second difference).
    """
    p = _as_tensor(pred, "pred")
    g = _as_tensor(gt, "gt", p.device)
    _check_pair(p, g)
    if p.shape[0] < 3:
        return float("nan")
    acc_p = p[2:] - 2 * p[1:-1] + p[:-2]
    acc_g = g[2:] - 2 * g[1:-1] + g[:-2]
    return float(torch.linalg.vector_norm(acc_p - acc_g, dim=-1).mean())


def reprojection_error_px(pred_2d: Any, gt_2d: Any, conf: Any) -> Any:
    """Per-frame mean 2D distance over the confident keypoints.

    pred_2d: (N, J, 2) float, projected model keypoints, pixels.
    gt_2d: (N, J, 2) or (N, J, 3) float, observed keypoints, pixels (a third column is ignored).
    conf: (N, J) float, confidence; keypoints with ``conf > 0`` count, unweighted.
    Returns (N,) float64, pixels; NaN for a frame without a confident keypoint. Non-finite
    observed keypoints never count.
    """
    p = _as_tensor(pred_2d, "pred_2d")
    g = _as_tensor(gt_2d, "gt_2d", p.device)
    c = _as_tensor(conf, "conf", p.device)
    if p.dim() != 3 or p.shape[-1] != 2:
        raise ValueError(f"expected pred_2d of shape (N, J, 2), got {tuple(p.shape)}")
    if g.dim() != 3 or g.shape[:2] != p.shape[:2] or g.shape[-1] not in (2, 3):
        raise ValueError(f"expected gt_2d of shape ({p.shape[0]}, {p.shape[1]}, 2|3), got {tuple(g.shape)}")
    if c.shape != p.shape[:2]:
        raise ValueError(f"expected conf of shape ({p.shape[0]}, {p.shape[1]}), got {tuple(c.shape)}")
    g = g[..., :2]
    valid = (c > 0) & torch.isfinite(g).all(-1) & torch.isfinite(c)
    dist = torch.linalg.vector_norm(p - torch.where(valid[..., None], g, p), dim=-1)
    count = valid.sum(-1)
    err = (dist * valid).sum(-1) / count.clamp_min(1)
    err = torch.where(count > 0, err, torch.full_like(err, float("nan")))
    return _like(err, pred_2d)
