"""SynSin's depth network d: a U-Net whose sigmoid output is mapped to a depth range in metres."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dl3d.synsin.blocks import conv2d


def sigmoid_to_depth(s: torch.Tensor, *, min_depth: float, max_depth: float,
                     mapping: Literal["linear", "inverse"] = "linear") -> torch.Tensor:
    """Map s in (0, 1) to depth in (min_depth, max_depth) metres.

    linear (paper): ``min + s * (max - min)``. inverse: uniform in inverse depth,
    ``1 / (1/max + s * (1/min - 1/max))``; the official ``--use_inverse_depth`` formula
    ``1 / (10 s + 0.01)`` is this with min = 1/10.01 m and max = 100 m.
    """
    if mapping == "linear":
        return min_depth + s * (max_depth - min_depth)
    if mapping == "inverse":
        return 1.0 / (1.0 / max_depth + s * (1.0 / min_depth - 1.0 / max_depth))
    raise ValueError(f"mapping must be 'linear' or 'inverse', got {mapping!r}")


class DepthUNet(nn.Module):
    """U-Net with ``levels`` stride-2 4x4 convolutions down and as many bilinear-up 3x3 convolutions up.

    As the official ``Unet``: encoder widths f, 2f, 4f, 8f, 8f, ... (f = ``filters``), LeakyReLU(0.2)
    before each down conv, BatchNorm after all but the first and the last (1x1 at the bottom for
    256 px and 8 levels); ReLU, 2x bilinear up-sampling, 3x3 conv and BatchNorm on the way up, each
    output concatenated with the encoder map of the same size; the last conv has no norm.
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 1, filters: int = 32, levels: int = 8,
                 spectral: bool = True):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = levels
        enc = [min(filters * 2 ** i, filters * 8) for i in range(levels)]
        self.down = nn.ModuleList()
        self.down_norm = nn.ModuleList()
        for i in range(levels):
            cin = in_channels if i == 0 else enc[i - 1]
            self.down.append(conv2d(cin, enc[i], 4, stride=2, padding=1, spectral=spectral))
            self.down_norm.append(nn.BatchNorm2d(enc[i]) if 0 < i < levels - 1 else nn.Identity())
        self.up_convs = nn.ModuleList()
        self.up_norm = nn.ModuleList()
        for i in range(levels):
            # Up step i takes the level-(levels-1-i) map (concatenated with its skip except at the bottom).
            src = levels - 1 - i
            cin = enc[src] if i == 0 else 2 * enc[src]
            last = i == levels - 1
            cout = out_channels if last else enc[src - 1]
            self.up_convs.append(conv2d(cin, cout, 3, padding=1, spectral=spectral))
            self.up_norm.append(nn.Identity() if last else nn.BatchNorm2d(cout))
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.leaky = nn.LeakyReLU(0.2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in_channels, H, W), H and W divisible by 2**levels. Returns (N, out_channels, H, W) logits."""
        step = 2 ** self.levels
        if x.ndim != 4 or x.shape[-2] % step or x.shape[-1] % step:
            raise ValueError(f"expected input of shape (N, C, H, W) with H and W divisible by 2**levels = {step}, "
                             f"got {tuple(x.shape)}")
        skips = []
        h = x
        for i, (conv, norm) in enumerate(zip(self.down, self.down_norm)):
            h = norm(conv(h if i == 0 else self.leaky(h)))
            skips.append(h)
        for i, (conv, norm) in enumerate(zip(self.up_convs, self.up_norm)):
            h = norm(conv(self.up(self.relu(h))))
            if i < self.levels - 1:
                h = torch.cat((h, skips[self.levels - 2 - i]), dim=1)
        return h


class DepthNet(nn.Module):
    """(N, 3, H, W) image in [-1, 1] -> (N, 1, H, W) depth in metres, in (min_depth, max_depth)."""

    def __init__(self, *, min_depth: float = 0.5, max_depth: float = 10.0,
                 mapping: Literal["linear", "inverse"] = "linear", filters: int = 32, levels: int = 8,
                 spectral: bool = True):
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.unet = DepthUNet(in_channels=3, out_channels=1, filters=filters, levels=levels, spectral=spectral)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.mapping = mapping

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: (N, 3, H, W) float in [-1, 1]. Returns depth (N, 1, H, W), metres."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected image of shape (N, 3, H, W), got {tuple(image.shape)}")
        s = torch.sigmoid(self.unet(image))
        return sigmoid_to_depth(s, min_depth=self.min_depth, max_depth=self.max_depth, mapping=self.mapping)
