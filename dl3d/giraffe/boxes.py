"""Object boxes: scales, translations and rotations about the vertical axis (official ``bounding_box_generator.py``).

A scene's K objects are (s, t, R): s (B, K, 3) box half-sizes, t (B, K, 3) centres, R (B, K, 3, 3)
rotations about z. A world point p maps into box k as ``R_k (p - t_k) / s_k`` (the official
``transform_points_to_box``), where the object's field lives in [-1, 1]^3.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dl3d.giraffe.config import CLEVR_COUNT_PROBS, GiraffeConfig


def rotation_z(turns: Tensor) -> Tensor:
    """turns: (...) rotation values in turns -> (..., 3, 3) rotation matrices about z by 2 pi turns."""
    a = 2 * math.pi * turns
    c, s = a.cos(), a.sin()
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack((c, -s, zero, s, c, zero, zero, zero, one), dim=-1).reshape(*a.shape, 3, 3)


def to_box(points: Tensor, s: Tensor, t: Tensor, R: Tensor) -> Tensor:
    """World points into one box's frame. points: (B, N, 3); s, t: (B, 3); R: (B, 3, 3) -> (B, N, 3)."""
    return (points - t[:, None]) @ R.transpose(1, 2) / s[:, None]


def dirs_to_box(dirs: Tensor, s: Tensor, R: Tensor) -> Tensor:
    """World directions into one box's frame (rotated, divided by the scale). dirs: (B, N, 3) -> (B, N, 3)."""
    return dirs @ R.transpose(1, 2) / s[:, None]


def _lerp(lo, hi, val: Tensor) -> Tensor:
    lo = torch.as_tensor(lo, dtype=val.dtype, device=val.device)
    hi = torch.as_tensor(hi, dtype=val.dtype, device=val.device)
    return lo + val * (hi - lo)


def boxes_from_controls(cfg: GiraffeConfig, val_s: Tensor, val_t: Tensor, val_r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Boxes from controls in [0, 1] (the official ``get_transformations``).

    val_s: (B, K, 3) (only the first value counts with ``fix_scale_ratio``), val_t: (B, K, 3),
    val_r: (B, K). Values outside [0, 1] extrapolate (the official 'add objects' programs use them).
    Returns s (B, K, 3), t (B, K, 3), R (B, K, 3, 3).
    """
    if cfg.fix_scale_ratio:
        val_s = val_s[..., :1].expand_as(val_s)
    s = _lerp(cfg.scale_min, cfg.scale_max, val_s)
    t = _lerp(cfg.translation_min, cfg.translation_max, val_t)
    if cfg.object_on_plane:
        t = torch.cat((t[..., :2], torch.full_like(t[..., 2:], cfg.z_level_plane)), dim=-1)
    R = rotation_z(_lerp(cfg.rotation_range[0], cfg.rotation_range[1], val_r))
    return s, t, R


def sample_boxes(cfg: GiraffeConfig, batch: int, device=None, generator: torch.Generator | None = None,
                 n_boxes: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Random boxes from the config's ranges (the official ``get_random_offset``, without the CLEVR prior file).

    Returns s (B, K, 3), t (B, K, 3), R (B, K, 3, 3) with K = ``n_boxes`` (default ``cfg.n_boxes``)."""
    k = cfg.n_boxes if n_boxes is None else n_boxes
    val_s = torch.rand(batch, k, 1 if cfg.fix_scale_ratio else 3, generator=generator).expand(batch, k, 3)
    val_t = torch.rand(batch, k, 3, generator=generator)
    val_r = torch.rand(batch, k, generator=generator)
    return tuple(x.to(device) for x in boxes_from_controls(cfg, val_s, val_t, val_r))  # type: ignore[return-value]


def sample_object_existence(batch: int, n_boxes: int = 5, generator: torch.Generator | None = None) -> Tensor:
    """(B, n_boxes) bool: 2, 3, 4 or 5 objects present with the CLEVR2345 probabilities, at random slots."""
    if n_boxes != len(CLEVR_COUNT_PROBS) + 1:
        raise ValueError(f"the CLEVR2345 count probabilities are for 5 boxes, got n_boxes={n_boxes}")
    probs = torch.tensor(CLEVR_COUNT_PROBS, dtype=torch.float64)
    counts = torch.multinomial(probs / probs.sum(), batch, replacement=True, generator=generator) + 2
    order = torch.rand(batch, n_boxes, generator=generator).argsort(dim=1)
    ranks = order.argsort(dim=1)
    return ranks < counts[:, None]
