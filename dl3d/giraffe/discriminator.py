"""GIRAFFE's DCGAN discriminator (official ``im2scene/discriminator/conv.py``, ``DCDiscriminator``).

``n = log2(S) - 2`` convs 4x4, stride 2, padding 1, no bias, no normalisation, LeakyReLU(0.2); widths
``top / 2^(n-1), ..., top / 2, top``; then a 4x4 valid conv (no bias) to one logit.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn


class DCDiscriminator(nn.Module):
    """(B, 3, S, S) images in [0, 1] -> (B, 1) logits."""

    def __init__(self, *, image_size: int = 64, top_width: int = 512, in_dim: int = 3):
        super().__init__()
        n = int(round(math.log2(image_size))) - 2
        if n < 1 or 2 ** (n + 2) != image_size:
            raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
        widths = [in_dim] + [top_width // 2 ** (n - 1 - i) for i in range(n)]
        if min(widths[1:]) < 1:
            raise ValueError(f"top_width {top_width} is too small for {n} layers")
        self.blocks = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=False) for i in range(n))
        self.conv_out = nn.Conv2d(top_width, 1, 4, 1, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.blocks:
            x = F.leaky_relu(layer(x), 0.2)
        return self.conv_out(x).reshape(x.shape[0], 1)
