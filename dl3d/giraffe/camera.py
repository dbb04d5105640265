"""GIRAFFE's camera: a pinhole on a sphere around the origin, looking at it, z up (official ``im2scene/camera.py``).

Pixel convention (the official ``arange_pixels`` + flips): pixel (row r, column c) of an S x S image
lies on the image plane at ``x = 2c / (S - 1) - 1``, ``y = 1 - 2r / (S - 1)``, ``z = -1`` in camera
coordinates (the camera looks along -z, y up), scaled by ``1 / focal``; ``focal = 1 / tan(fov / 2)``,
so the field of view spans the pixel-centre extent [-1, 1].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def focal_from_fov(fov_deg: float) -> float:
    """Focal length for an image plane spanning [-1, 1]: ``1 / tan(fov / 2)``."""
    return 1.0 / math.tan(0.5 * math.radians(fov_deg))


def sphere_point(u: Tensor, v: Tensor) -> Tensor:
    """u, v: (B,) in [0, 1] -> (B, 3) unit vectors: theta = 2 pi u, phi = arccos(1 - 2 v), z up."""
    theta = 2 * math.pi * u
    phi = torch.arccos((1 - 2 * v).clamp(-1, 1))
    return torch.stack((phi.sin() * theta.cos(), phi.sin() * theta.sin(), phi.cos()), dim=-1)


def look_at(eye: Tensor, eps: float = 1e-5) -> Tensor:
    """eye: (B, 3) camera centres -> (B, 3, 3) camera-to-world rotations looking at the origin, z up.

    Columns: camera x (right), y (up), z (backwards, from the origin to the eye)."""
    up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
    z = eye / eye.norm(dim=-1, keepdim=True).clamp_min(eps)
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    y = torch.linalg.cross(z, x)
    y = y / y.norm(dim=-1, keepdim=True).clamp_min(eps)
    return torch.stack((x, y, z), dim=-1)


def camera_pose(u: Tensor, v: Tensor, radius: Tensor | float) -> Tensor:
    """(B,) azimuth u and elevation v in [0, 1], radius -> (B, 4, 4) camera-to-world poses."""
    eye = sphere_point(u, v) * torch.as_tensor(radius, dtype=u.dtype, device=u.device).reshape(-1, 1)
    pose = torch.eye(4, dtype=u.dtype, device=u.device).repeat(eye.shape[0], 1, 1)
    pose[:, :3, :3] = look_at(eye)
    pose[:, :3, 3] = eye
    return pose


def pixel_rays(resolution: int, focal: float, pose: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through the pixel centres of a ``resolution`` x ``resolution`` image.

    pose: (B, 4, 4) camera-to-world. Returns origins (B, 3) and directions (B, R*R, 3), world frame,
    row-major over (row, column); a direction's component along the camera's -z axis is 1, so the
    point at ray parameter d lies at depth d in front of the camera (directions are not unit length).
    """
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    t = torch.linspace(-1.0, 1.0, resolution, dtype=pose.dtype, device=pose.device)
    ys, xs = torch.meshgrid(-t, t, indexing="ij")
    cam = torch.stack((xs / focal, ys / focal, -torch.ones_like(xs)), dim=-1).reshape(-1, 3)
    return pose[:, :3, 3], cam @ pose[:, :3, :3].transpose(1, 2)
