"""Multi-scale PatchGAN discriminators (pix2pixHD / SPADE, as SynSin's official code).

Each discriminator: a 4x4 stride-2 conv + LeakyReLU(0.2), then ``layers - 1`` 4x4 convs (stride 2, the
last stride 1) with spectral norm, InstanceNorm (no affine) and LeakyReLU, widths doubling up to 512,
then a 4x4 conv to one logit per patch. The next discriminator sees the input average-pooled by 2.
Every layer's output is returned, for the feature-matching loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """(N, in_channels, H, W) -> list of layer outputs; the last is (N, 1, h, w) patch logits."""

    def __init__(self, *, in_channels: int = 3, width: int = 64, layers: int = 4):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        kw, pad = 4, 2
        seq = [nn.Sequential(nn.Conv2d(in_channels, width, kw, stride=2, padding=pad), nn.LeakyReLU(0.2))]
        c = width
        for i in range(1, layers):
            out = min(c * 2, 512)
            stride = 1 if i == layers - 1 else 2
            seq.append(nn.Sequential(
                spectral_norm(nn.Conv2d(c, out, kw, stride=stride, padding=pad, bias=False)),
                nn.InstanceNorm2d(out, affine=False),
                nn.LeakyReLU(0.2)))
            c = out
        seq.append(nn.Sequential(nn.Conv2d(c, 1, kw, stride=1, padding=pad)))
        self.layers = nn.ModuleList(seq)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


class MultiScaleDiscriminator(nn.Module):
    """``scales`` PatchGAN discriminators on successively 2x average-pooled copies of the image.

    forward: (N, 3, H, W) image in [-1, 1] -> list over scales of lists of layer outputs (last = logits).
    """

    def __init__(self, *, in_channels: int = 3, width: int = 64, layers: int = 4, scales: int = 2):
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        self.discriminators = nn.ModuleList(
            [PatchDiscriminator(in_channels=in_channels, width=width, layers=layers) for _ in range(scales)])
        self.in_channels = in_channels

    def forward(self, image: torch.Tensor) -> list[list[torch.Tensor]]:
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"expected image of shape (N, {self.in_channels}, H, W), got {tuple(image.shape)}")
        results = []
        for i, d in enumerate(self.discriminators):
            if i:
                image = F.avg_pool2d(image, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            results.append(d(image))
        return results
