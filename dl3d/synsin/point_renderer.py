"""SynSin's differentiable neural point cloud renderer, on pytorch3d's point rasterizer.

Every source pixel becomes a 3D point carrying its feature vector: the pixel centre is lifted with the
source intrinsics and its depth, moved into the target camera by the relative pose, projected with the
target intrinsics and splatted as a disk of radius r (NDC). pytorch3d keeps the K nearest points (in z)
per pixel; each gets ``alpha = (1 - d / r) ** gamma`` (d: pixel-to-point distance, NDC; as the official
``RasterizePointsXYsBlending``, with d/r clamped to [sqrt(1e-3), 1]) and they are alpha composited
front to back (or summed). Gradients reach the features through the compositing weights and the
depths through the projected positions (pytorch3d's rasterizer back-propagates the point-to-pixel
distances); with the identity pose the projected positions do not depend on depth.

Conventions. Cameras are OpenCV (x right, y down, z forward); K is (3, 3) in pixels, where pixel
(row y, column x) covers [x, x + 1) x [y, y + 1) and its centre is (x + 0.5, y + 0.5) -- the convention
of ``pytorch3d.utils.cameras_from_opencv_projection``. ``rel_pose`` is the 4x4 source-camera to
target-camera transform ``T_tgt @ inv(T_src)`` of world-to-camera poses. pytorch3d's NDC has +X left,
+Y up and the shorter image side spanning [-1, 1]: ``ndc_x = -(2u - W) / min(H, W)``,
``ndc_y = -(2v - H) / min(H, W)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pytorch3d.renderer.compositing import alpha_composite, norm_weighted_sum, weighted_sum
from pytorch3d.renderer.points import rasterize_points
from pytorch3d.structures import Pointclouds
from torch import nn

MIN_DEPTH = 1e-3
"""Points nearer than this (metres, target camera z) are dropped before rasterisation."""
_MIN_DIST2 = 1e-3
"""Lower clamp of (d / r)**2, as the official renderer (keeps the sqrt's gradient finite)."""


def _check_cameras(depth: torch.Tensor, K: torch.Tensor, rel_pose: torch.Tensor) -> None:
    n = depth.shape[0]
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"expected depth of shape (N, 1, H, W), got {tuple(depth.shape)}")
    if K.shape != (n, 3, 3):
        raise ValueError(f"expected K of shape ({n}, 3, 3), got {tuple(K.shape)}")
    if rel_pose.shape != (n, 4, 4):
        raise ValueError(f"expected rel_pose of shape ({n}, 4, 4), got {tuple(rel_pose.shape)}")


def pixel_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel centres (H*W, 3): rows of (x + 0.5, y + 0.5, 1), row-major over (y, x)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack((xs + 0.5, ys + 0.5, torch.ones_like(xs)), dim=-1).reshape(-1, 3)


def lift_pixels(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Back-project every pixel centre to a 3D point in its camera frame.

    depth: (N, 1, H, W) metres (z along the optical axis). K: (N, 3, 3) pixels.
    Returns (N, H*W, 3) points, camera frame (OpenCV axes), metres, row-major over (y, x).
    """
    n, _, h, w = depth.shape
    rays = pixel_grid(h, w, device=depth.device, dtype=depth.dtype) @ torch.linalg.inv(K).transpose(1, 2)
    return rays * depth.reshape(n, h * w, 1)


def transform_points(points: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """points: (N, P, 3); pose: (N, 4, 4) rigid transform. Returns (N, P, 3) = R p + t."""
    return points @ pose[:, :3, :3].transpose(1, 2) + pose[:, None, :3, 3]


def project_to_ndc(points: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Project camera-frame points into pytorch3d NDC screen space.

    points: (N, P, 3) OpenCV camera frame, metres. K: (N, 3, 3) pixels, for an image of height x width.
    Returns (N, P, 3): (ndc_x, ndc_y, z) with pytorch3d's +X left, +Y up, shorter side in [-1, 1], and z the
    camera-frame depth in metres. Points with z < MIN_DEPTH get z = -1 and xy far off screen, so the
    rasterizer drops them.
    """
    z = points[..., 2:3]
    valid = z > MIN_DEPTH
    z_safe = torch.where(valid, z, torch.ones_like(z))
    uv = (points[..., :2] / z_safe) @ K[:, :2, :2].transpose(1, 2) + K[:, None, :2, 2]
    scale = min(height, width) / 2.0
    sizes = torch.tensor([width, height], dtype=points.dtype, device=points.device) / 2.0
    ndc_xy = -(uv - sizes) / scale
    ndc_xy = torch.where(valid, ndc_xy, torch.full_like(ndc_xy, 1e4))
    return torch.cat((ndc_xy, torch.where(valid, z, torch.full_like(z, -1.0))), dim=-1)


def splat_alphas(dists2: torch.Tensor, idx: torch.Tensor, *, radius: float, gamma: float) -> torch.Tensor:
    """Soft-splat weights from pytorch3d's squared NDC distances.

    dists2, idx: (N, H, W, K) from ``rasterize_points``. Returns (N, K, H, W) alphas
    ``(1 - clamp(d / r, sqrt(1e-3), 1)) ** gamma``, 0 where idx < 0 (no point).
    """
    d = (dists2 / (radius * radius)).clamp(min=_MIN_DIST2, max=1.0).sqrt()
    alphas = (1.0 - d).pow(gamma)
    alphas = torch.where(idx >= 0, alphas, torch.zeros_like(alphas))
    return alphas.permute(0, 3, 1, 2)


class _GatherWeightedSum(torch.autograd.Function):
    """out[n, :, pixel] = sum_k weights[n, k, pixel] * features[idx[n, k, pixel]] over the slots with idx >= 0.

    weights, idx: (N, K, H*W); features: (M, C) (packed points). A loop over the K slots: each gathers
    (H*W, C) rows and the backward scatters them back (``index_add_``), so memory stays at one slot's
    gather and nothing of size K x H x W x C is kept for the backward.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, idx: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        n, k, hw = weights.shape
        out = features.new_zeros(n, hw, features.shape[1])
        live = idx >= 0
        safe = idx.clamp(min=0)
        w = torch.where(live, weights, torch.zeros_like(weights))
        for b in range(n):
            for j in range(k):
                if not bool(live[b, j].any()):
                    break  # the rasterizer fills the slots nearest first: the rest are empty too
                out[b].addcmul_(features[safe[b, j]], w[b, j, :, None])
        ctx.save_for_backward(w, safe, live, features)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        w, safe, live, features = ctx.saved_tensors
        n, k, hw = w.shape
        grad_w = torch.zeros_like(w) if ctx.needs_input_grad[0] else None
        grad_f = torch.zeros_like(features) if ctx.needs_input_grad[2] else None
        for b in range(n):
            for j in range(k):
                if not bool(live[b, j].any()):
                    break
                if grad_w is not None:
                    grad_w[b, j] = (features[safe[b, j]] * grad_out[b]).sum(dim=1) * live[b, j]
                if grad_f is not None:
                    grad_f.index_add_(0, safe[b, j], grad_out[b] * w[b, j, :, None])
        return grad_w, None, grad_f


def composite_points(idx: torch.Tensor, alphas: torch.Tensor, features: torch.Tensor,
                     accumulation: Literal["alphacomposite", "wsum", "wsumnorm"] = "alphacomposite") -> torch.Tensor:
    """pytorch3d's point compositors (``alpha_composite``, ``weighted_sum``, ``norm_weighted_sum``) in torch.

    idx: (N, K, H, W) packed point index per slot, nearest first, -1 for none; alphas: (N, K, H, W);
    features: (C, M). Returns (N, C, H, W), equal to pytorch3d's to float rounding (tested). Alpha
    compositing weighs slot k by ``alpha_k * prod_{j<k} (1 - alpha_j)``; the normalised sum divides by
    ``max(sum alpha, 1e-4)`` as pytorch3d does. On the CPU pytorch3d's own alpha-composite backward is a
    serial loop that took 119 of the 152 s of a 256-px SynSin step; this one is a loop over the K slots.
    """
    n, k, h, w = alphas.shape
    live = idx >= 0
    alphas = torch.where(live, alphas, torch.zeros_like(alphas))
    if accumulation == "alphacomposite":
        through = torch.cumprod(1.0 - alphas, dim=1)
        weights = alphas * torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1)
    elif accumulation == "wsum":
        weights = alphas
    elif accumulation == "wsumnorm":
        weights = alphas / alphas.sum(dim=1, keepdim=True).clamp(min=1e-4)
    else:
        raise ValueError(f"accumulation must be alphacomposite, wsum or wsumnorm; got {accumulation!r}")
    out = _GatherWeightedSum.apply(weights.reshape(n, k, h * w), idx.reshape(n, k, h * w),
                                   features.transpose(0, 1).contiguous())
    return out.transpose(1, 2).reshape(n, -1, h, w)


def render_points(ndc_points: torch.Tensor, features: torch.Tensor, *, image_size: tuple[int, int], radius: float,
                  points_per_pixel: int, gamma: float = 1.0,
                  accumulation: Literal["alphacomposite", "wsum", "wsumnorm"] = "alphacomposite",
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterize and composite per-point features.

    ndc_points: (N, P, 3) from ``project_to_ndc``. features: (N, P, C). image_size: (H, W) pixels.
    Returns (rendered (N, C, H, W), coverage (N, 1, H, W)): coverage is the compositor applied to a
    constant feature 1 (no gradient) -- the accumulated opacity in [0, 1] for alpha compositing, 1 for the
    normalised sum, the summed weights for wsum; 0 where no point lands.
    """
    n, p, _ = ndc_points.shape
    if features.ndim != 3 or features.shape[:2] != (n, p):
        raise ValueError(f"expected features of shape ({n}, {p}, C), got {tuple(features.shape)}")
    clouds = Pointclouds(points=ndc_points.float())
    idx, _, dists2 = rasterize_points(clouds, image_size=tuple(image_size), radius=float(radius),
                                      points_per_pixel=int(points_per_pixel))
    alphas = splat_alphas(dists2, idx, radius=radius, gamma=gamma)
    idx = idx.permute(0, 3, 1, 2).long()
    packed = features.reshape(n * p, -1).float().transpose(0, 1).contiguous()  # (C, N*P), packed index n*P + p
    ones = torch.ones(1, n * p, dtype=packed.dtype, device=packed.device)
    composite = {"alphacomposite": alpha_composite, "wsum": weighted_sum, "wsumnorm": norm_weighted_sum}
    if accumulation not in composite:
        raise ValueError(f"accumulation must be one of {', '.join(composite)}; got {accumulation!r}")
    if packed.is_cuda:  # pytorch3d's CUDA kernels are fast; its CPU ones are not (see composite_points)
        fn = composite[accumulation]
    else:
        def fn(i, a, f):
            return composite_points(i, a, f, accumulation)
    rendered = fn(idx, alphas, packed)
    with torch.no_grad():
        coverage = fn(idx, alphas.detach(), ones)
    return rendered, coverage


class PointRenderer(nn.Module):
    """Lift, transform, project and splat per-pixel features into a target view (no parameters)."""

    def __init__(self, *, radius: float = 0.03125, points_per_pixel: int = 128, gamma: float = 1.0,
                 accumulation: Literal["alphacomposite", "wsum", "wsumnorm"] = "alphacomposite"):
        super().__init__()
        if not radius > 0:
            raise ValueError(f"radius must be > 0 (NDC units), got {radius}")
        if not 1 <= points_per_pixel <= 150:
            raise ValueError(f"points_per_pixel must be in [1, 150], got {points_per_pixel}")
        self.radius = float(radius)
        self.points_per_pixel = int(points_per_pixel)
        self.gamma = float(gamma)
        self.accumulation = accumulation

    def forward(self, features: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, rel_pose: torch.Tensor,
                K_target: torch.Tensor | None = None, image_size: tuple[int, int] | None = None,
                ) -> dict[str, torch.Tensor]:
        """Render source features in the target camera.

        features: (N, C, H, W) per source pixel. depth: (N, 1, H, W) metres. K: (N, 3, 3) source intrinsics,
        pixels. rel_pose: (N, 4, 4) source-camera -> target-camera (OpenCV axes, metres).
        K_target: (N, 3, 3) target intrinsics (default: K). image_size: target (H', W') (default: (H, W)).
        Returns dict(features (N, C, H', W'), coverage (N, 1, H', W') in [0, 1], points (N, H*W, 3) target
        camera frame, metres).
        """
        if features.ndim != 4:
            raise ValueError(f"expected features of shape (N, C, H, W), got {tuple(features.shape)}")
        _check_cameras(depth, K, rel_pose)
        n, c, h, w = features.shape
        if depth.shape != (n, 1, h, w):
            raise ValueError(f"expected depth of shape ({n}, 1, {h}, {w}), got {tuple(depth.shape)}")
        K_target = K if K_target is None else K_target
        if K_target.shape != (n, 3, 3):
            raise ValueError(f"expected K_target of shape ({n}, 3, 3), got {tuple(K_target.shape)}")
        out_h, out_w = (h, w) if image_size is None else (int(image_size[0]), int(image_size[1]))
        points = transform_points(lift_pixels(depth, K), rel_pose)
        ndc = project_to_ndc(points, K_target, out_h, out_w)
        rendered, coverage = render_points(
            ndc, features.flatten(2).transpose(1, 2), image_size=(out_h, out_w), radius=self.radius,
            points_per_pixel=self.points_per_pixel, gamma=self.gamma, accumulation=self.accumulation)
        return {"features": rendered.to(features.dtype), "coverage": coverage.to(features.dtype), "points": points}
