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

    forward(points (N, 3), dirs (N, 3) or None, z_shape (B, z_dim), z_app (B, z_dim), batch_index (N,) long)
    -> sigma (N,) raw density (no activation), features (N, feature_dim). Points are in the field's own
    frame (box coordinates for objects), divided by ``downscale`` before encoding; directions need not
    be unit length (they are normalised). ``batch_index[n]`` names the scene of point n, so any subset of
    a batch's samples can be evaluated with its own codes (the codes are projected once per scene).
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
                batch_index: Tensor) -> tuple[Tensor, Tensor]:
        if points.ndim != 2 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape (N, 3), got {tuple(points.shape)}")
        p = positional_encoding(points / self.downscale, self.n_freq_points)
        zs = self.fc_z(z_shape)  # (B, H): projected once per scene, gathered per point
        net = torch.relu(self.fc_in(p) + zs[batch_index])
        k = 0
        for i, layer in enumerate(self.blocks):
            net = torch.relu(layer(net))
            if (i + 1) in self.skips:
                net = net + self.fc_z_skips[k](z_shape)[batch_index] + self.fc_p_skips[k](p)
                k += 1
        sigma = self.sigma_out(net).squeeze(-1)
        net = self.feat_view(net) + self.fc_z_view(z_app)[batch_index]
        if dirs is not None:
            d = dirs / dirs.norm(dim=-1, keepdim=True)
            net = torch.relu(net + self.fc_view(positional_encoding(d, self.n_freq_dirs)))
        return sigma, self.feat_out(net)
