"""Pinhole cameras of the synthetic multi-view data: intrinsics, world-to-camera poses, relative motions.

Cameras are OpenCV pinholes (x right, y down, z forward) with 4x4 world-to-camera poses
(``x_cam = T @ x_world``) and K in pixels under the convention of ``dl3d.synsin.point_renderer``:
pixel (row y, column x) covers ``[x, x + 1) x [y, y + 1)``, so the image centre is ``(W / 2, H / 2)``.
World frame: metres, z up. Rotations come from ``pytorch3d.transforms``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch3d.transforms import axis_angle_to_matrix, euler_angles_to_matrix

__all__ = ["axis_angle_rotation", "camera_pose", "pinhole_intrinsics", "relative_motion", "rotation_about_z"]


def pinhole_intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """(3, 3) K in pixels: horizontal field of view ``fov_deg``, square pixels, principal point (W/2, H/2)."""
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def camera_pose(eye: np.ndarray, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """(4, 4) world-to-camera pose (OpenCV axes) of a camera at ``eye`` (world, metres, z up).

    yaw: heading of the optical axis about world z, radians (0 = looking along +x, pi/2 = along +y).
    pitch: elevation of the optical axis, radians (positive = looking up). roll: rotation about the
    optical axis, radians (positive turns the image clockwise as seen by the viewer).
    """
    fwd = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])  # rows: camera axes in world coordinates
    R = rotation_about_z(roll) @ R
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ np.asarray(eye, dtype=np.float64)
    return T


def rotation_about_z(angle: float) -> np.ndarray:
    """(3, 3) float64 rotation by ``angle`` radians about the z axis (``[[c, -s, 0], [s, c, 0], [0, 0, 1]]``)."""
    return euler_angles_to_matrix(torch.tensor([0.0, 0.0, angle], dtype=torch.float64), "XYZ").numpy()


def axis_angle_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) float64 rotation by ``angle`` radians about the unit ``axis`` (3,), right-handed."""
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(axis, dtype=np.float64) * angle)).numpy()


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def relative_motion(rng: np.random.Generator, max_rotation_deg: float, max_translation: float) -> np.ndarray:
    """(4, 4) source-camera-to-target-camera transform ``D`` (``T_tgt = D @ T_src``).

    The camera turns about its own centre by an angle uniform in [0, max_rotation_deg] about a uniformly
    random axis, and its centre moves by a uniformly random direction times a length uniform in
    [0, max_translation] metres (in source-camera axes): ``D = [R | -R d]``.
    """
    R = axis_angle_rotation(_unit(rng), math.radians(rng.uniform(0.0, max_rotation_deg)))
    d = _unit(rng) * rng.uniform(0.0, max_translation)
    D = np.eye(4)
    D[:3, :3] = R
    D[:3, 3] = -R @ d
    return D
