"""Draw posed body meshes over video frames with pytorch3d (and optionally from the side).

Cameras are OpenCV pinholes: x right, y down, z forward, the principal point and focal length in
pixels of the frame; vertices are in that camera's frame, metres (as ``dl3d smpl fit`` writes them).
"""

from __future__ import annotations

import math

import numpy as np
import torch

MESH_COLOUR = (0.65, 0.74, 0.86)
"""Light blue-grey, the colour SMPL renders are usually shown in."""


def _renderer(height: int, width: int, focal: torch.Tensor, pp: torch.Tensor, device: torch.device):
    from pytorch3d.renderer import (HardPhongShader, MeshRasterizer, MeshRenderer, PointLights,
                                    RasterizationSettings)
    from pytorch3d.utils import cameras_from_opencv_projection

    b = focal.shape[0]
    K = torch.zeros(b, 3, 3, device=device)
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    K[:, :2, 2] = pp
    K[:, 2, 2] = 1
    cameras = cameras_from_opencv_projection(
        torch.eye(3, device=device).expand(b, 3, 3), torch.zeros(b, 3, device=device), K,
        torch.tensor([[height, width]], device=device).expand(b, 2))
    raster = RasterizationSettings(image_size=(height, width), blur_radius=0.0, faces_per_pixel=1)
    lights = PointLights(device=device, location=[[0.0, 0.0, -1.0]], ambient_color=[[0.45] * 3],
                         diffuse_color=[[0.55] * 3], specular_color=[[0.05] * 3])
    return MeshRenderer(MeshRasterizer(cameras=cameras, raster_settings=raster),
                        HardPhongShader(device=device, cameras=cameras, lights=lights))


TILE = 48
"""Tile size, pixels, of the CPU path: pytorch3d's CPU rasterizer tests every face at every pixel
(it has no coarse-to-fine binning on the CPU), so the CPU path renders the body's bounding box in
tiles, each with only the faces that overlap it: the same image, about two orders of magnitude faster."""


def render_meshes(vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int, focal: torch.Tensor,
                  principal_point: torch.Tensor, colour: tuple[float, float, float] = MESH_COLOUR
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one mesh per image (Phong shading, a light at the camera).

    Args:
        vertices: (B, V, 3) float, camera frame (OpenCV axes), metres.
        faces: (F, 3) int64 vertex indices, shared by all meshes.
        height, width: image size, pixels.
        focal: (B,) focal length, pixels; principal_point: (B, 2) pixels (x, y).
        colour: RGB in [0, 1] of the whole mesh.

    Returns:
        rgb (B, H, W, 3) float in [0, 1] and coverage (B, H, W) float in {0, 1}.
    """
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"expected vertices of shape (B, V, 3), got {tuple(vertices.shape)}")
    device = vertices.device
    vertices = vertices.float()
    faces = faces.to(device)
    focal = focal.float().to(device).reshape(-1)
    pp = principal_point.float().to(device).reshape(-1, 2)
    if device.type == "cuda":
        return _render(vertices, faces, height, width, focal, pp, colour)
    rgb = torch.zeros(vertices.shape[0], height, width, 3)
    cover = torch.zeros(vertices.shape[0], height, width)
    for b in range(vertices.shape[0]):
        v = vertices[b:b + 1]
        z = v[0, :, 2].clamp(min=1e-6)
        uv = v[0, :, :2] / z[:, None] * focal[b] + pp[b]
        fuv = uv[faces]  # (F, 3, 2)
        lo, hi = fuv.min(1).values, fuv.max(1).values
        front = (v[0, faces, 2] > 1e-3).all(1) & (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] < width) & (lo[:, 1] < height)
        if not front.any():
            continue
        x0, y0 = (lo[front].min(0).values.floor().clamp(min=0)).long().tolist()
        x1, y1 = hi[front].max(0).values.ceil().long().tolist()
        x1, y1 = min(x1 + 1, width), min(y1 + 1, height)
        for ty in range(y0, y1, TILE):
            for tx in range(x0, x1, TILE):
                th, tw = min(TILE, y1 - ty), min(TILE, x1 - tx)
                keep = front & (hi[:, 0] >= tx - 1) & (lo[:, 0] <= tx + tw + 1) & (hi[:, 1] >= ty - 1) & (lo[:, 1] <= ty + th + 1)
                if not keep.any():
                    continue
                shift = pp[b:b + 1] - torch.tensor([[tx, ty]], dtype=pp.dtype)
                used, local = torch.unique(faces[keep], return_inverse=True)  # only this tile's vertices
                tile_rgb, tile_cover = _render(v[:, used], local, th, tw, focal[b:b + 1], shift, colour)
                rgb[b, ty:ty + th, tx:tx + tw] = tile_rgb[0]
                cover[b, ty:ty + th, tx:tx + tw] = tile_cover[0]
    return rgb, cover


def _render(vertices, faces, height, width, focal, pp, colour):
    from pytorch3d.renderer import TexturesVertex
    from pytorch3d.structures import Meshes

    b = vertices.shape[0]
    rgb = torch.tensor(colour, device=vertices.device).expand(b, vertices.shape[1], 3)
    meshes = Meshes(verts=list(vertices), faces=[faces] * b, textures=TexturesVertex(rgb))
    images = _renderer(height, width, focal, pp, vertices.device)(meshes)
    return images[..., :3].clamp(0, 1), (images[..., 3] > 0).float()


def side_view_vertices(vertices: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """The meshes turned 90 degrees about the vertical (camera y) axis through ``centre``.

    vertices: (B, V, 3) camera frame, metres; centre: (B, 3) the point kept in place (the pelvis).
    Returns (B, V, 3): what a camera to the person's side would see, drawn with the same camera.
    """
    from pytorch3d.transforms import euler_angles_to_matrix

    rot = euler_angles_to_matrix(torch.tensor([0.0, math.pi / 2, 0.0], dtype=torch.float64), "XYZ")  # about y
    rot = rot.to(dtype=vertices.dtype, device=vertices.device)
    return (vertices - centre[:, None]) @ rot.T + centre[:, None]


def overlay(frames: np.ndarray, rgb: torch.Tensor, coverage: torch.Tensor, alpha: float) -> np.ndarray:
    """Blend renders over frames: (B, H, W, 3) uint8 frames, rgb (B, H, W, 3) [0, 1], coverage (B, H, W).
    Returns (B, H, W, 3) uint8."""
    f = torch.from_numpy(np.array(frames)).float() / 255
    a = alpha * coverage.cpu()[..., None]
    return (((1 - a) * f + a * rgb.cpu()) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
