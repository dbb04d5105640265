"""GIRAFFE's neural renderer: the 16 x 16 feature image to an RGB image (official ``neural_renderer.py``).

``n = log2(S / 16)`` blocks, each a nearest-neighbour x2 upsampling then a 3x3 conv and LeakyReLU(0.2),
widths ``n_feat / 2, n_feat / 4, ...`` (never below ``min_feat``), no normalisation. RGB skips: a 3x3
conv to RGB of the input features and of every block's output; the running RGB image is upsampled
bilinearly and blurred with the normalised [1, 2, 1]^T [1, 2, 1] kernel (reflect padding, as kornia's
``filter2D`` default) before each block's RGB is added. A sigmoid ends it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def blur(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W): depthwise [1, 2, 1]^T [1, 2, 1] / 16 filter, reflect padding."""
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    k = (k[:, None] * k[None, :]) / 16.0
    c = x.shape[1]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k.expand(c, 1, 3, 3), groups=c)


def upsample_rgb(x: Tensor) -> Tensor:
    """Bilinear x2 (align_corners False), then :func:`blur`."""
    return blur(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


class NeuralRenderer(nn.Module):
    """(B, input_dim, r, r) features -> (B, 3, r * 2^blocks, r * 2^blocks) RGB in (0, 1)."""

    def __init__(self, *, input_dim: int = 128, n_feat: int = 128, min_feat: int = 32, blocks: int = 2,
                 out_dim: int = 3):
        super().__init__()
        self.conv_in = nn.Identity() if n_feat == input_dim else nn.Conv2d(input_dim, n_feat, 1)
        widths = [n_feat] + [max(n_feat // 2 ** (i + 1), min_feat) for i in range(blocks)]
        if blocks >= 1:
            widths[1] = n_feat // 2  # the first block halves n_feat without the min_feat floor (official)
        self.conv_layers = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1) for i in range(blocks))
        self.conv_rgb = nn.ModuleList([nn.Conv2d(input_dim, out_dim, 3, padding=1)] +
                                      [nn.Conv2d(widths[i + 1], out_dim, 3, padding=1) for i in range(blocks)])

    def forward(self, x: Tensor) -> Tensor:
        net = self.conv_in(x)
        rgb = self.conv_rgb[0](x)
        if len(self.conv_layers):
            rgb = upsample_rgb(rgb)
        for i, layer in enumerate(self.conv_layers):
            net = F.leaky_relu(layer(F.interpolate(net, scale_factor=2.0, mode="nearest")), 0.2)
            rgb = rgb + self.conv_rgb[i + 1](net)
            if i < len(self.conv_layers) - 1:
                rgb = upsample_rgb(rgb)
        return torch.sigmoid(rgb)
