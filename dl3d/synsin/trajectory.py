"""Camera trajectories for mass view synthesis: source-camera-to-target-camera transforms.

All poses are 4x4 rigid transforms in the OpenCV camera frame (x right, y down, z forward) that map
points from the source camera into a target camera: ``x_tgt = T @ x_src``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pytorch3d.transforms import euler_angles_to_matrix

TrajectoryKind = Literal["orbit", "dolly", "pan"]
TRAJECTORIES: tuple[str, ...] = ("orbit", "dolly", "pan")


def trajectory(kind: TrajectoryKind, steps: int, magnitude: float, pivot_depth: float = 2.0) -> torch.Tensor:
    """``steps`` target poses, (T, 4, 4) float32, sweeping from -magnitude to +magnitude.

    orbit: the camera circles a point ``pivot_depth`` metres ahead of the source camera, by angles
        in [-magnitude, magnitude] radians (the scene turns in front of the viewer).
    dolly: the camera moves forward/back along its optical axis by [-magnitude, magnitude] metres.
    pan: the camera slides sideways along its x axis by [-magnitude, magnitude] metres.
    The middle step of an odd ``steps`` is the identity (the source view).
    """
    if kind not in TRAJECTORIES:
        raise ValueError(f"expected trajectory one of {TRAJECTORIES}, got {kind!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    values = torch.linspace(-magnitude, magnitude, steps) if steps > 1 else torch.zeros(1)
    poses = torch.eye(4).repeat(steps, 1, 1)
    for i, v in enumerate(values.tolist()):
        if kind == "orbit":
            # Camera rotates by v about the pivot: x_tgt = R (x_src - p) + p, with R the inverse motion.
            rot = euler_angles_to_matrix(torch.tensor([0.0, -v, 0.0], dtype=torch.float64), "XYZ").float()  # R_y(-v)
            pivot = torch.tensor([0.0, 0.0, pivot_depth])
            poses[i, :3, :3] = rot
            poses[i, :3, 3] = pivot - rot @ pivot
        elif kind == "dolly":
            poses[i, 2, 3] = -v  # moving the camera forward brings points closer
        else:
            poses[i, 0, 3] = -v  # moving the camera right shifts points left
    return poses
