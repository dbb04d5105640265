"""Row bookkeeping for batched fitting: row status, neighbours within a track, keyframes, interpolation.

A fitting batch holds every frame of every track of a shard, one row per (track, frame). These
helpers sort rows, flag the ones the data term must skip, find consecutive frames of one track
for the temporal term, pick keyframes for the warm start and fill other rows by interpolation.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch3d.transforms import matrix_to_quaternion, quaternion_to_matrix
from torch import Tensor

from dl3d.keypoints.formats import get_format

__all__ = [
    "STATUSES",
    "clean_keypoints",
    "consecutive_mask",
    "has_torso",
    "interpolate_rotations",
    "interpolate_rows",
    "keyframe_mask",
    "row_status",
]

STATUSES: tuple[str, ...] = ("ok", "no_keypoints", "nan_keypoints", "too_few_keypoints", "nonfinite_fit")
"""Per-row fit status. Only "ok" rows enter the data term; the others still get parameters (from
their track's neighbours and the priors) but should not be trusted. "nonfinite_fit" is set after the
fit, on a row whose parameters, joints or loss came out NaN or infinite (its numbers are not to be
used). It should not happen: keypoints far outside the image are dropped as missing
(``dl3d.data.keypoint_range``), residuals are clamped before squaring and a row's non-finite
gradients are zeroed, so such a row no longer poisons its track's shared shape or its neighbours."""


def clean_keypoints(keypoints: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split detections into finite pixels and confidences; flag rows holding any NaN or inf.

    keypoints: (N, J, 3) float, x, y pixels and confidence (0 = missing), may hold NaN.
    Returns xy (N, J, 2) (non-finite -> 0), conf (N, J) clamped to [0, 1] (0 where anything of the
    keypoint is non-finite), and nan_rows (N,) bool.
    """
    finite = torch.isfinite(keypoints)
    nan_rows = ~finite.flatten(1).all(1)
    kp_ok = finite.all(-1)
    xy = torch.where(kp_ok[..., None], keypoints[..., :2], torch.zeros_like(keypoints[..., :2]))
    conf = torch.where(kp_ok, keypoints[..., 2].clamp(0.0, 1.0), torch.zeros_like(keypoints[..., 2]))
    return xy, conf, nan_rows


def row_status(conf: Tensor, nan_rows: Tensor, min_keypoints: int) -> list[str]:
    """Status of each row (see ``STATUSES``).

    conf: (N, J) float confidences from ``clean_keypoints``; nan_rows: (N,) bool.
    A row is "nan_keypoints" if it holds any non-finite value (the whole row is then left out:
    a detector that writes NaN is not trusted for that frame), "no_keypoints" if no keypoint is
    confident (a frame with nobody), "too_few_keypoints" if fewer than ``min_keypoints`` are,
    else "ok".
    """
    count = (conf > 0).sum(1)
    out = []
    for nan, c in zip(nan_rows.tolist(), count.tolist()):
        if nan:
            out.append("nan_keypoints")
        elif c == 0:
            out.append("no_keypoints")
        elif c < min_keypoints:
            out.append("too_few_keypoints")
        else:
            out.append("ok")
    return out


def has_torso(conf: Tensor, fmt: str) -> Tensor:
    """(N, J) confidences -> (N,) bool: a shoulder and the hip below it are both seen (the camera
    initialisation needs one such side; other rows get their camera from their track)."""
    ls, rs, lh, rh = get_format(fmt).torso
    seen = conf > 0
    return (seen[:, ls] & seen[:, lh]) | (seen[:, rs] & seen[:, rh])


def consecutive_mask(track: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """For rows i = 1..N-2: whether rows i-1, i, i+1 are frames t-1, t, t+1 of one track.

    track, frame: (N,) int, rows sorted by (track, frame). Returns (max(N - 2, 0),) bool.
    """
    if len(track) < 3:
        return np.zeros(0, dtype=bool)
    mid = np.arange(1, len(track) - 1)
    return (track[mid - 1] == track[mid]) & (track[mid + 1] == track[mid]) \
        & (frame[mid] - frame[mid - 1] == 1) & (frame[mid + 1] - frame[mid] == 1)


def keyframe_mask(track: np.ndarray, ok: np.ndarray, stride: int) -> np.ndarray:
    """Every ``stride``-th usable row of each track, plus each track's last usable row.

    track: (N,) int sorted; ok: (N,) bool usable rows. Returns (N,) bool.
    """
    mask = np.zeros(len(track), dtype=bool)
    for t in np.unique(track):
        rows = np.flatnonzero((track == t) & ok)
        if len(rows):
            mask[rows[::stride]] = True
            mask[rows[-1]] = True
    return mask


def _brackets(track: np.ndarray, frame: np.ndarray,
              known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every row, the known rows before/after it in its track and the blend weight of 'after'.

    Rows of a track with no known row get ``has = False``.
    """
    n = len(track)
    left, right = np.arange(n), np.arange(n)
    weight, has = np.zeros(n), np.zeros(n, dtype=bool)
    for t in np.unique(track):
        rows = np.flatnonzero(track == t)
        keys = rows[known[rows]]
        if len(keys) == 0:
            continue
        pos = np.searchsorted(frame[keys], frame[rows], side="right") - 1  # last key at or before
        lo = keys[np.clip(pos, 0, len(keys) - 1)]
        hi = keys[np.clip(pos + 1, 0, len(keys) - 1)]
        lo = np.where(pos < 0, keys[0], lo)
        span = (frame[hi] - frame[lo]).astype(np.float64)
        w = np.where(span > 0, (frame[rows] - frame[lo]) / np.where(span > 0, span, 1), 0.0)
        left[rows], right[rows], weight[rows], has[rows] = lo, hi, np.clip(w, 0, 1), True
    return left, right, weight, has


def interpolate_rows(values: Tensor, track: np.ndarray, frame: np.ndarray, known: np.ndarray) -> Tensor:
    """Fill rows from the known rows of their track: linear in frame number, held at the ends.

    values: (N, ...) float; track, frame: (N,) int sorted by (track, frame); known: (N,) bool.
    Returns (N, ...) float; rows of a track without known rows keep their value.
    """
    left, right, w, has = _brackets(track, frame, known)
    dev = values.device
    wt = torch.as_tensor(w, dtype=values.dtype, device=dev).reshape((-1,) + (1,) * (values.dim() - 1))
    out = values[torch.as_tensor(left, device=dev)] * (1 - wt) + values[torch.as_tensor(right, device=dev)] * wt
    keep = torch.as_tensor(has, device=dev).reshape((-1,) + (1,) * (values.dim() - 1))
    return torch.where(keep, out, values)


def interpolate_rotations(rot: Tensor, track: np.ndarray, frame: np.ndarray, known: np.ndarray) -> Tensor:
    """``interpolate_rows`` for rotation matrices (N, 3, 3): normalised quaternion blend (nlerp)."""
    left, right, w, has = _brackets(track, frame, known)
    dev = rot.device
    q = matrix_to_quaternion(rot)
    ql, qr = q[torch.as_tensor(left, device=dev)], q[torch.as_tensor(right, device=dev)]
    qr = torch.where(((ql * qr).sum(-1, keepdim=True) < 0), -qr, qr)
    wt = torch.as_tensor(w, dtype=rot.dtype, device=dev)[:, None]
    blend = ql * (1 - wt) + qr * wt
    blend = blend / torch.linalg.vector_norm(blend, dim=-1, keepdim=True).clamp_min(1e-12)
    out = quaternion_to_matrix(blend)
    return torch.where(torch.as_tensor(has, device=dev)[:, None, None], out, rot)
