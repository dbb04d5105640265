"""SynSin's spatial feature network f: per-pixel features at the input resolution."""

from __future__ import annotations

import torch
from torch import nn

from dl3d.synsin.blocks import ResNetBlock


def feature_net_widths(*, feature_width: int, feature_dim: int, blocks: int) -> list[int]:
    """Channel widths [3, w1, ..., w_blocks] of the feature network's blocks.

    The official ``resnet_256W8UpDown64`` encoder (8 blocks) is [3, ngf/2, ngf/2, ngf/2, ngf, ngf, ngf,
    ngf, 64]: the first 3/8 of the blocks run at ngf/2, the rest at ngf, the last one outputs
    ``feature_dim``. Other block counts keep those proportions.
    """
    half = max(feature_width // 2, 1)
    n_half = (3 * blocks) // 8
    widths = [3] + [half] * n_half + [feature_width] * (blocks - n_half)
    widths[-1] = feature_dim
    return widths


class SpatialFeatureNet(nn.Module):
    """ResNet blocks without down-sampling: (N, 3, H, W) image in [-1, 1] -> (N, feature_dim, H, W)."""

    def __init__(self, *, feature_dim: int = 64, feature_width: int = 64, blocks: int = 8,
                 spectral: bool = True):
        super().__init__()
        widths = feature_net_widths(feature_width=feature_width, feature_dim=feature_dim, blocks=blocks)
        self.blocks = nn.Sequential(*[
            ResNetBlock(in_channels=a, out_channels=b, resample="none", spectral=spectral)
            for a, b in zip(widths[:-1], widths[1:])
        ])
        self.feature_dim = feature_dim

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: (N, 3, H, W) float in [-1, 1]. Returns (N, feature_dim, H, W) features."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected image of shape (N, 3, H, W), got {tuple(image.shape)}")
        return self.blocks(image)
