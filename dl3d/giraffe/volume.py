"""Scene composition and volume rendering of feature fields (official ``generator.py``: ``composite_function``,
``calc_volume_weights``, ``add_noise_to_interval``). Small pure functions; shapes name B scenes, R rays,
S samples per ray, K fields (objects then background), C feature channels."""

from __future__ import annotations

import torch
from torch import Tensor

ZERO_DENSITY = 1e-4
"""Denominator used where every field's density is zero (official)."""


def composite(sigma: Tensor, feat: Tensor) -> tuple[Tensor, Tensor]:
    """Compose K fields: densities summed, features averaged with the densities as weights.

    sigma: (K, B, R, S) non-negative; feat: (K, B, R, S, C). Returns sigma (B, R, S) = sum_k sigma_k and
    feat (B, R, S, C) = sum_k sigma_k feat_k / sum_k sigma_k, with the denominator set to 1e-4 where it
    is zero (so empty space gets a zero feature).
    """
    if sigma.shape[0] == 1:
        return sigma[0], feat[0]
    total = sigma.sum(0)
    denom = torch.where(total == 0, torch.full_like(total, ZERO_DENSITY), total)
    return total, (feat * (sigma / denom).unsqueeze(-1)).sum(0)


def volume_weights(depths: Tensor, ray_norm: Tensor, sigma: Tensor, last_dist: float = 1e10) -> Tensor:
    """Alpha-compositing weights of the samples along each ray.

    depths: (B, R, S) ray parameters (increasing); ray_norm: (B, R, 1) length of the ray direction
    (distances are ``(d_{i+1} - d_i) * |ray|``, the last one ``last_dist * |ray|``); sigma: (B, R, S)
    densities (negative values count as 0). Returns (B, R, S):
    ``w_i = alpha_i prod_{j<i} (1 - alpha_j + 1e-10)``, ``alpha_i = 1 - exp(-relu(sigma_i) dist_i)``.
    """
    dists = torch.cat((depths[..., 1:] - depths[..., :-1], torch.full_like(depths[..., :1], last_dist)), dim=-1)
    alpha = 1.0 - torch.exp(-torch.relu(sigma) * dists * ray_norm)
    trans = torch.cumprod(torch.cat((torch.ones_like(alpha[..., :1]), 1.0 - alpha + 1e-10), dim=-1), dim=-1)
    return alpha * trans[..., :-1]


def sample_depths(near: float, far: float, batch: int, rays: int, samples: int, *, jitter: bool,
                  device=None, dtype=torch.float32) -> Tensor:
    """(B, R, S) ray parameters: ``samples`` evenly from near to far; with ``jitter`` each one is drawn
    uniformly between the midpoints to its neighbours (the first from near, the last up to far)."""
    d = torch.linspace(near, far, samples, device=device, dtype=dtype).expand(batch, rays, samples)
    if not jitter:
        return d.contiguous()
    mid = 0.5 * (d[..., 1:] + d[..., :-1])
    hi = torch.cat((mid, d[..., -1:]), dim=-1)
    lo = torch.cat((d[..., :1], mid), dim=-1)
    return lo + (hi - lo) * torch.rand_like(lo)
