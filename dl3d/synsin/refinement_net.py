"""SynSin's refinement network g: rendered features -> RGB, filling what the source did not see."""

from __future__ import annotations

import torch
from torch import nn

from dl3d.synsin.blocks import ResNetBlock


def refinement_plan(*, in_channels: int, width: int, downsamples: int, mid_blocks: int) -> list[tuple[int, int, str]]:
    """(in, out, resample) of each block.

    One block to ``width``; ``downsamples`` down blocks doubling the width; ``mid_blocks`` blocks at the
    bottom; ``downsamples`` up blocks halving it but not below 2*width; one block at 2*width (width when
    there is no down-sampling); a last block to 3 channels. With width 64, 2 down-samplings and 1 mid block
    this is the official ``resnet_256W8UpDown64`` decoder: 64 -> 64 -> 128 (down) -> 256 (down) -> 256 ->
    128 (up) -> 128 (up) -> 128 -> 3.
    """
    plan = [(in_channels, width, "none")]
    c = width
    for _ in range(downsamples):
        plan.append((c, 2 * c, "down"))
        c *= 2
    for _ in range(mid_blocks):
        plan.append((c, c, "none"))
    floor = 2 * width if downsamples else width
    for _ in range(downsamples):
        out = max(c // 2, floor)
        plan.append((c, out, "up"))
        c = out
    plan.append((c, c, "none"))
    plan.append((c, 3, "none"))
    return plan


class RefinementNet(nn.Module):
    """ResNet with down/up blocks and a tanh: (N, in_channels, H, W) -> (N, 3, H, W) RGB in [-1, 1].

    H and W must be divisible by 2**downsamples.
    """

    def __init__(self, *, in_channels: int = 64, width: int = 64, downsamples: int = 2, mid_blocks: int = 1,
                 spectral: bool = True):
        super().__init__()
        self.blocks = nn.Sequential(*[
            ResNetBlock(in_channels=a, out_channels=b, resample=r, spectral=spectral)
            for a, b, r in refinement_plan(in_channels=in_channels, width=width, downsamples=downsamples,
                                           mid_blocks=mid_blocks)
        ])
        self.in_channels = in_channels
        self.downsamples = downsamples

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (N, in_channels, H, W). Returns (N, 3, H, W) in [-1, 1]."""
        step = 2 ** self.downsamples
        if features.ndim != 4 or features.shape[1] != self.in_channels or features.shape[-2] % step \
                or features.shape[-1] % step:
            raise ValueError(f"expected features of shape (N, {self.in_channels}, H, W) with H and W divisible by "
                             f"{step}, got {tuple(features.shape)}")
        return torch.tanh(self.blocks(features))
