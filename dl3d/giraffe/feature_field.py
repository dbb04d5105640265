"""GIRAFFE's generative neural feature field: an MLP from (point, view direction, codes) to (density, feature).

Layout (official ``im2scene/giraffe/models/decoder.py``, ``Decoder``): the encoded point goes through
``fc_in``; the shape code is projected and ADDED (not concatenated) to that first hidden state; then
``blocks - 1`` ReLU layers, and after each layer listed in ``skips`` (counted from 1, never the last)
the shape code and the encoded point are projected and added again. The density is read from that
state, before the appearance code enters; then a linear layer, plus the projected appearance code,
plus the projected encoded view direction, ReLU, and a linear feature head (no sigmoid).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def positional_encoding(x: Tensor, n_freq: int) -> Tensor:
    """``x: (..., D)`` -> ``(..., 2 * n_freq * D)``: for i = 0 .. n_freq - 1, ``sin(2^i pi x)`` then
    ``cos(2^i pi x)`` (each D wide), concatenated in that order; the raw ``x`` is not included."""
    if n_freq < 1:
        raise ValueError(f"n_freq must be >= 1, got {n_freq}")
    freqs = (2.0 ** torch.arange(n_freq, device=x.device, dtype=x.dtype)) * math.pi  # (L,)
    angles = x.unsqueeze(-2) * freqs.unsqueeze(-1)  # (..., L, D)
    return torch.cat((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (..., L, 2D) -> (..., 2LD)


class FeatureField(nn.Module):
    """One generative feature field (an object's or the background's).

    forward(points, dirs, z_shape (B, z_dim), z_app (B, z_dim), batch_index=None) -> (sigma, features):
    either points (B, M, 3) of each scene (``batch_index`` None) -> sigma (B, M), features (B, M, C), or
    points (N, 3) of any scenes with ``batch_index`` (N,) long naming each point's scene -> sigma (N,),
    features (N, C) (so any subset of a batch's samples is evaluated with its own codes). sigma is the raw
    density (no activation). Points are in the field's own frame (box coordinates for objects), divided
    by ``downscale`` before encoding; directions (same layout as points, or None) need not be unit length
    (they are normalised). The codes are projected once per scene.
    """

    def __init__(self, *, hidden: int = 128, blocks: int = 8, skips: tuple[int, ...] = (4,), z_dim: int = 256,
                 feature_dim: int = 128, n_freq_points: int = 10, n_freq_dirs: int = 4, downscale: float = 2.0):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.n_freq_points, self.n_freq_dirs, self.downscale = n_freq_points, n_freq_dirs, float(downscale)
        self.skips = tuple(s for s in skips if 1 <= s < blocks - 1)
        """Skip layers that exist: the official code adds after layer s (1-based) only if s < blocks - 1."""
        dim_p, dim_d = 6 * n_freq_points, 6 * n_freq_dirs
        self.fc_in = nn.Linear(dim_p, hidden)
        self.fc_z = nn.Linear(z_dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(blocks - 1))
        self.fc_z_skips = nn.ModuleList(nn.Linear(z_dim, hidden) for _ in self.skips)
        self.fc_p_skips = nn.ModuleList(nn.Linear(dim_p, hidden) for _ in self.skips)
        self.sigma_out = nn.Linear(hidden, 1)
        self.feat_view = nn.Linear(hidden, hidden)
        self.fc_z_view = nn.Linear(z_dim, hidden)
        self.fc_view = nn.Linear(dim_d, hidden)
        self.feat_out = nn.Linear(hidden, feature_dim)

    def forward(self, points: Tensor, dirs: Tensor | None, z_shape: Tensor, z_app: Tensor,
                batch_index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if batch_index is None:
            if points.ndim != 3 or points.shape[-1] != 3 or points.shape[0] != z_shape.shape[0]:
                raise ValueError(f"expected points of shape (B, M, 3) with B = {z_shape.shape[0]} scenes, "
                                 f"got {tuple(points.shape)}")
            per_point = lambda x: x.unsqueeze(1)  # noqa: E731 - (B, H) -> (B, 1, H), broadcast over M
        else:
            if points.ndim != 2 or points.shape[-1] != 3 or batch_index.shape != points.shape[:1]:
                raise ValueError(f"expected points (N, 3) and batch_index (N,), got {tuple(points.shape)} and "
                                 f"{tuple(batch_index.shape)}")
            per_point = lambda x: x[batch_index]  # noqa: E731 - (B, H) -> (N, H)
        p = positional_encoding(points / self.downscale, self.n_freq_points)
        net = torch.relu_(self.fc_in(p) + per_point(self.fc_z(z_shape)))  # codes projected once per scene
        k = 0
        for i, layer in enumerate(self.blocks):
            net = torch.relu_(layer(net))
            if (i + 1) in self.skips:
                net = net + per_point(self.fc_z_skips[k](z_shape)) + self.fc_p_skips[k](p)
                k += 1
        sigma = self.sigma_out(net).squeeze(-1)
        net = self.feat_view(net) + per_point(self.fc_z_view(z_app))
        if dirs is not None:
            d = dirs / dirs.norm(dim=-1, keepdim=True)
            net = torch.relu_(net + self.fc_view(positional_encoding(d, self.n_freq_dirs)))
        return sigma, self.feat_out(net)
