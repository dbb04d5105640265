"""SynSin (Wiles, Gkioxari, Szeliski, Johnson; CVPR 2020): single-image view synthesis.

source image -> spatial features f (N, C, H, W) and depth d (N, 1, H, W) -> a point cloud of features ->
splatted into the target camera by a differentiable point renderer -> a refinement net turns the rendered
features into the target RGB image (and fills what the source did not see).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dl3d.synsin.depth_net import DepthNet
from dl3d.synsin.feature_net import SpatialFeatureNet
from dl3d.synsin.point_renderer import PointRenderer
from dl3d.synsin.refinement_net import RefinementNet


class SynSin(nn.Module):
    """The SynSin generator. Images are RGB in [0, 1] at this boundary ([-1, 1] inside).

    Cameras: OpenCV axes, K (N, 3, 3) in pixels (pixel centres at +0.5), ``rel_pose`` (N, 4, 4) the
    source-camera -> target-camera transform ``T_tgt @ inv(T_src)`` in metres. Image sides must be
    divisible by 2**depth_levels and 2**refine_downsamples.
    """

    def __init__(self, *, feature_dim: int = 64, feature_width: int = 64, feature_blocks: int = 8,
                 depth_filters: int = 32, depth_levels: int = 8, min_depth: float = 0.5, max_depth: float = 10.0,
                 depth_mapping: Literal["linear", "inverse"] = "linear", radius: float = 0.03125,
                 points_per_pixel: int = 128, gamma: float = 1.0,
                 accumulation: Literal["alphacomposite", "wsum", "wsumnorm"] = "alphacomposite",
                 refine_width: int = 64, refine_downsamples: int = 2, refine_mid_blocks: int = 1,
                 spectral_norm: bool = True):
        super().__init__()
        self.feature_net = SpatialFeatureNet(feature_dim=feature_dim, feature_width=feature_width,
                                             blocks=feature_blocks, spectral=spectral_norm)
        self.depth_net = DepthNet(min_depth=min_depth, max_depth=max_depth, mapping=depth_mapping,
                                  filters=depth_filters, levels=depth_levels, spectral=spectral_norm)
        self.renderer = PointRenderer(radius=radius, points_per_pixel=points_per_pixel, gamma=gamma,
                                      accumulation=accumulation)
        self.refinement_net = RefinementNet(in_channels=feature_dim, width=refine_width,
                                            downsamples=refine_downsamples, mid_blocks=refine_mid_blocks,
                                            spectral=spectral_norm)
        self.size_multiple = 2 ** max(depth_levels, refine_downsamples)

    def _check_image(self, src_img: torch.Tensor) -> None:
        m = self.size_multiple
        if src_img.ndim != 4 or src_img.shape[1] != 3 or src_img.shape[-2] % m or src_img.shape[-1] % m:
            raise ValueError(f"expected src_img of shape (N, 3, H, W) with H and W divisible by {m}, "
                             f"got {tuple(src_img.shape)}")

    def encode(self, src_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src_img: (N, 3, H, W) in [0, 1]. Returns (features (N, C, H, W), depth (N, 1, H, W) metres)."""
        self._check_image(src_img)
        x = src_img * 2.0 - 1.0
        return self.feature_net(x), self.depth_net(x)

    def render(self, features: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, rel_pose: torch.Tensor,
               K_target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Render encoded features in the target view and refine them.

        Returns dict(pred (N, 3, H, W) in [0, 1], rendered_features (N, C, H, W), coverage (N, 1, H, W)
        compositing weight in [0, 1], 0 where no source point lands).
        """
        out = self.renderer(features, depth, K, rel_pose, K_target=K_target)
        pred = (self.refinement_net(out["features"]) + 1.0) / 2.0
        return {"pred": pred, "rendered_features": out["features"], "coverage": out["coverage"]}

    def forward(self, src_img: torch.Tensor, K: torch.Tensor, rel_pose: torch.Tensor,
                K_target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Synthesize the target view.

        src_img: (N, 3, H, W) RGB in [0, 1]. K: (N, 3, 3) source intrinsics, pixels. rel_pose: (N, 4, 4)
        source -> target camera, metres. K_target: (N, 3, 3) target intrinsics (default K).
        Returns dict(pred (N, 3, H, W) in [0, 1], depth (N, 1, H, W) metres, features (N, C, H, W) source
        features, rendered_features (N, C, H, W), coverage (N, 1, H, W)).
        """
        features, depth = self.encode(src_img)
        out = self.render(features, depth, K, rel_pose, K_target=K_target)
        return {**out, "depth": depth, "features": features}

    def synthesize(self, src_img: torch.Tensor, K: torch.Tensor, rel_poses: torch.Tensor,
                   K_target: torch.Tensor | None = None) -> torch.Tensor:
        """Several target views per source, encoding the source once.

        src_img: (N, 3, H, W) in [0, 1]; K: (N, 3, 3); rel_poses: (N, T, 4, 4) source -> target cameras.
        Returns (N, T, 3, H, W) images in [0, 1].
        """
        n = src_img.shape[0]
        if rel_poses.ndim != 4 or rel_poses.shape[0] != n or rel_poses.shape[-2:] != (4, 4):
            raise ValueError(f"expected rel_poses of shape ({n}, T, 4, 4), got {tuple(rel_poses.shape)}")
        features, depth = self.encode(src_img)
        views = [self.render(features, depth, K, rel_poses[:, t], K_target=K_target)["pred"]
                 for t in range(rel_poses.shape[1])]
        return torch.stack(views, dim=1)
