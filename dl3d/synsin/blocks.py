"""The pre-activation ResNet block shared by SynSin's feature and refinement networks.

As the official ``ResNet_Block``: ``BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3 -> resample`` plus a
``conv1x1 -> resample`` shortcut when the width or resolution changes. The official blocks take their
BN gains/biases from a random noise vector (BigGAN style); here they are plain affine BatchNorm.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

Resample = Literal["none", "down", "up"]


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
           spectral: bool = False, bias: bool = True) -> nn.Module:
    """``nn.Conv2d``, wrapped in spectral normalisation when ``spectral``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    return _spectral_norm(conv) if spectral else conv


def _resampler(resample: Resample) -> nn.Module:
    if resample == "down":
        return nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
    if resample == "up":
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    if resample == "none":
        return nn.Identity()
    raise ValueError(f"resample must be 'none', 'down' or 'up', got {resample!r}")


class ResNetBlock(nn.Module):
    """One residual block; ``forward``: (N, in_channels, H, W) -> (N, out_channels, H', W').

    H' = ceil(H / 2) for ``resample="down"`` (3x3 average pool, stride 2), 2H for ``"up"`` (bilinear),
    H otherwise.
    """

    def __init__(self, *, in_channels: int, out_channels: int, resample: Resample = "none",
                 spectral: bool = True):
        super().__init__()
        self.main = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            conv2d(in_channels, out_channels, 3, padding=1, spectral=spectral),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            conv2d(out_channels, out_channels, 3, padding=1, spectral=spectral),
            _resampler(resample),
        )
        if resample != "none" or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv2d(in_channels, out_channels, 1, spectral=spectral),
                                          _resampler(resample))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)
