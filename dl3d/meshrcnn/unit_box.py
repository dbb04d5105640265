"""The perspective-normalised unit box of a 2D box, and voxel targets in it.

Mesh R-CNN predicts voxels and meshes of an object in the unit box ``[-1, 1]^3`` of its RoI
(``meshrcnn/structures/mesh.py``, ``voxel.py``, ``utils/shape.py``): the frustum that the 2D box cuts
out of the camera's view between the depths ``z0`` and ``z1`` is mapped onto the cube by a projective
transform, so that

    u = 2 (x_img - x1) / (x2 - x1) - 1        x_img = fx X / Z + cx   (the pixel column of the point)
    v = 2 (y_img - y1) / (y2 - y1) - 1        y_img = fy Y / Z + cy
    w = (z1 + z0) / (z1 - z0) - 2 z0 z1 / ((z1 - z0) Z)

``u`` and ``v`` are the point's image position within the box (-1 at its left/top edge, +1 at its
right/bottom edge), ``w`` is -1 at ``Z = z0`` and +1 at ``Z = z1`` (an NDC-style depth). The official
code estimates the same transform as two 2D homographies from the frustum corners; this is its
closed form. Frames: OpenCV camera (x right, y down, z forward, metres); K in pixels, the pixel
``(row r, column c)`` covering ``[c, c + 1) x [r, r + 1)``. The official code's boxes use a
``w - 1 - x`` flip with the principal point at ``w / 2`` (a one-pixel offset): here K is used exactly.

Voxel grids are ``(D, H, W)`` over the unit box with ``w -> D``, ``v -> H``, ``u -> W``; cell ``i``
along an axis covers ``[-1 + 2 i / G, -1 + 2 (i + 1) / G]``, which is pytorch3d ``cubify``'s
``align="corner"`` (see ``dl3d.meshrcnn.voxel_head.CUBIFY_ALIGN``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(points: Tensor, boxes: Tensor, K: Tensor, zranges: Tensor) -> None:
    n = boxes.shape[0]
    if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] != n:
        raise ValueError(f"expected points of shape ({n}, P, 3), got {tuple(points.shape)}")
    if boxes.shape != (n, 4) or K.shape != (n, 3, 3) or zranges.shape != (n, 2):
        raise ValueError(f"expected boxes (N, 4), K (N, 3, 3), zranges (N, 2) with N = {n}; got "
                         f"{tuple(boxes.shape)}, {tuple(K.shape)}, {tuple(zranges.shape)}")
    if not bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()):
        raise ValueError("boxes must be x1 < x2, y1 < y2 (pixels)")
    if not bool(((zranges[:, 0] > 0) & (zranges[:, 1] > zranges[:, 0])).all()):
        raise ValueError("zranges must satisfy 0 < z0 < z1 (metres)")


def camera_to_unit_box(points: Tensor, boxes: Tensor, K: Tensor, zranges: Tensor) -> Tensor:
    """Camera-frame points into their box's unit box.

    Args:
        points: (N, P, 3) float, OpenCV camera frame, metres (Z > 0).
        boxes: (N, 4) float, x1 y1 x2 y2 in pixels.
        K: (N, 3, 3) intrinsics in pixels.
        zranges: (N, 2) float, the depths z0 < z1 mapped to w = -1 and w = +1, metres.
    Returns:
        (N, P, 3) unit-box coordinates (u, v, w); the frustum between z0 and z1 maps onto [-1, 1]^3.
    """
    _check(points, boxes, K, zranges)
    X, Y, Z = points.unbind(-1)
    x_img = K[:, 0, 0, None] * X / Z + K[:, 0, 2, None]
    y_img = K[:, 1, 1, None] * Y / Z + K[:, 1, 2, None]
    x1, y1, x2, y2 = (b[:, None] for b in boxes.unbind(-1))
    z0, z1 = (z[:, None] for z in zranges.unbind(-1))
    u = 2 * (x_img - x1) / (x2 - x1) - 1
    v = 2 * (y_img - y1) / (y2 - y1) - 1
    w = (z1 + z0) / (z1 - z0) - 2 * z0 * z1 / ((z1 - z0) * Z)
    return torch.stack([u, v, w], dim=-1)


def unit_box_to_camera(coords: Tensor, boxes: Tensor, K: Tensor, zranges: Tensor) -> Tensor:
    """The inverse of :func:`camera_to_unit_box`: (N, P, 3) unit-box (u, v, w) -> (N, P, 3) camera frame, metres."""
    _check(coords, boxes, K, zranges)
    u, v, w = coords.unbind(-1)
    x1, y1, x2, y2 = (b[:, None] for b in boxes.unbind(-1))
    z0, z1 = (z[:, None] for z in zranges.unbind(-1))
    Z = 2 * z0 * z1 / ((z1 + z0) - w * (z1 - z0))
    x_img = x1 + (u + 1) * (x2 - x1) / 2
    y_img = y1 + (v + 1) * (y2 - y1) / 2
    X = (x_img - K[:, 0, 2, None]) * Z / K[:, 0, 0, None]
    Y = (y_img - K[:, 1, 2, None]) * Z / K[:, 1, 1, None]
    return torch.stack([X, Y, Z], dim=-1)


def image_boxes(widths: Tensor, heights: Tensor) -> Tensor:
    """(N,) image widths and heights, pixels -> (N, 4) boxes covering each whole image."""
    zeros = torch.zeros_like(widths, dtype=torch.float32)
    return torch.stack([zeros, zeros, widths.float(), heights.float()], dim=-1)


def depth_extent_target(zranges: Tensor, focal: Tensor) -> Tensor:
    """Mesh R-CNN's ``dz``: an object's depth extent scaled to pixels at its centre depth.

    ``dz = f (z1 - z0) / ((z0 + z1) / 2)`` (``MeshRCNNMapper._process_dz``); the Z head regresses
    ``log(dz / box height)``. zranges: (N, 2) metres; focal: (N,) pixels. Returns (N,) pixels.
    """
    zc = zranges.mean(dim=-1)
    return focal * (zranges[:, 1] - zranges[:, 0]) / zc


def zrange_from_dz(dz: Tensor, focal: Tensor, center_depth: Tensor) -> Tensor:
    """Depth range of an object of predicted ``dz`` (pixels) placed at ``center_depth`` (metres).

    Mesh R-CNN predicts depth only up to scale: ``z = tc -+ tc dz / (2 f)`` (pix3d_evaluation.py, with
    ``tc`` the assumed centre depth). Returns (N, 2) metres; dz is clamped so that z0 stays > 0.
    """
    half = (dz / (2 * focal)).clamp(max=0.95)
    return torch.stack([center_depth * (1 - half), center_depth * (1 + half)], dim=-1)


def grid_centers(G: int, device=None, dtype=torch.float32) -> Tensor:
    """(G, G, G, 3) unit-box (u, v, w) of the centres of a ``(D, H, W)`` voxel grid, indexed [d, h, w]."""
    c = -1 + (2 * torch.arange(G, device=device, dtype=dtype) + 1) / G
    d, h, w = torch.meshgrid(c, c, c, indexing="ij")
    return torch.stack([w, h, d], dim=-1)


def voxel_targets(occupancy: Tensor, occupancy_to_camera: Tensor, boxes: Tensor, K: Tensor, zranges: Tensor,
                  G: int) -> Tensor:
    """Ground-truth voxels of objects in their boxes' unit boxes: a cell is occupied when its centre is.

    Args:
        occupancy: (N, R, R, R) bool, each object's solid occupancy on its own grid, indexed [k, j, i]
            along that grid's (z, y, x); cell i covers [-1 + 2i/R, -1 + 2(i+1)/R] of the grid's frame.
        occupancy_to_camera: (N, 4, 4) maps the grid's frame (homogeneous [-1, 1]^3 coordinates) into
            the camera frame (metres), e.g. the object's scaled pose.
        boxes, K, zranges: the unit boxes, as in :func:`camera_to_unit_box`.
        G: the side of the target grid.
    Returns:
        (N, G, G, G) float in {0, 1}, indexed [d, h, w] over (w, v, u) of the unit box.
    """
    n, R = occupancy.shape[0], occupancy.shape[-1]
    if occupancy.shape != (n, R, R, R) or occupancy_to_camera.shape != (n, 4, 4):
        raise ValueError(f"expected occupancy (N, R, R, R) and occupancy_to_camera (N, 4, 4), got "
                         f"{tuple(occupancy.shape)}, {tuple(occupancy_to_camera.shape)}")
    device = boxes.device
    centers = grid_centers(G, device).reshape(1, -1, 3).expand(n, -1, -1)
    cam = unit_box_to_camera(centers, boxes.float(), K.float(), zranges.float())
    inv = torch.linalg.inv(occupancy_to_camera.double()).float()
    local = cam @ inv[:, :3, :3].transpose(1, 2) + inv[:, None, :3, 3]
    idx = torch.floor((local + 1) * R / 2).long()
    inside = ((idx >= 0) & (idx < R)).all(dim=-1)
    idx = idx.clamp(0, R - 1)
    flat = occupancy.reshape(n, -1)
    lin = idx[..., 2] * R * R + idx[..., 1] * R + idx[..., 0]
    occ = torch.gather(flat, 1, lin) & inside
    return occ.reshape(n, G, G, G).float()
