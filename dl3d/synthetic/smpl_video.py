"""Synthetic keypoint videos of a walking body seen by a pinhole camera, in memory (benchmark data).

A body model (SMPL-format arrays, e.g. dl3d's procedural model, which is NOT SMPL) walks on the spot
with smooth sinusoidal motion: hips swing, knees and elbows bend in their natural direction only,
arms hang at the sides and swing against the legs, the spine and head sway a little. The person
stands 3-6 m in front of the camera, turned by a random yaw (front, side and back views), slowly
turning and drifting. Its keypoints are projected, jittered by Gaussian pixel noise, some dropped
(confidence 0, as OpenPose writes a missing keypoint) and some given low confidence and more noise.

Camera: OpenCV pinhole (x right, y down, z forward) at the origin; the SMPL body is y-up, so its
``global_orient`` includes a 180° rotation about x (``dl3d.fitting.camera.facing_rotation``).
Everything is deterministic per ``spec.seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from pytorch3d.transforms import euler_angles_to_matrix, matrix_to_axis_angle

from dl3d.body.joints_kernel import SelectedPointsKernel, build_points_kernel
from dl3d.config import opt
from dl3d.fitting.camera import facing_rotation, rotation_x
from dl3d.fitting.objective import project_points
from dl3d.keypoints.formats import FORMATS, SYNTHETIC_PROXIES, get_format

__all__ = ["KeypointVideoSpec", "SyntheticVideo", "format_points", "make_keypoint_video", "project", "stack_videos"]


@dataclass
class KeypointVideoSpec:
    """What ``make_keypoint_video`` generates: one person, one camera, one video."""

    frames: int = opt(30, "number of frames")
    fps: float = opt(30.0, "frames per second (sets the speed of the motion)")
    image_width: int = opt(1280, "image width, pixels")
    image_height: int = opt(720, "image height, pixels")
    focal_length: float = opt(1000.0, "focal length, pixels (square pixels, principal point at the centre)")
    keypoint_format: str = opt("body25", "keypoint layout of the observations: a name in dl3d.keypoints.FORMATS "
                                         "(body25, body25b, coco17, posetrack, ...)")
    noise_px: float = opt(2.0, "Gaussian pixel noise (std) on confident keypoints")
    drop_fraction: float = opt(0.1, "fraction of keypoints dropped (confidence 0, x = y = 0)")
    low_conf_fraction: float = opt(0.05, "fraction of keypoints with confidence in [0.1, 0.4] and 3x noise")
    min_depth: float = opt(3.0, "nearest distance of the pelvis from the camera, metres")
    max_depth: float = opt(6.0, "farthest distance of the pelvis from the camera, metres")
    yaw_deg: float = opt(0.0, "centre of the initial facing, degrees (0 = facing the camera, 180 = back)")
    yaw_range_deg: float = opt(180.0, "initial facing drawn in yaw_deg +- this many degrees (180 = any direction)")
    shape_std: float = opt(0.8, "std of the body shape coefficients")
    seed: int = opt(0, "random seed")

    def __post_init__(self):
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.keypoint_format not in FORMATS:
            raise ValueError(f"keypoint_format must be one of {sorted(FORMATS)}, got {self.keypoint_format!r}")
        for name in ("drop_fraction", "low_conf_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.min_depth <= self.max_depth:
            raise ValueError(f"expected 0 < min_depth <= max_depth, got {self.min_depth}, {self.max_depth}")
        if self.focal_length <= 0 or self.fps <= 0 or self.image_width < 1 or self.image_height < 1:
            raise ValueError("focal_length, fps, image_width and image_height must be positive")


@dataclass
class SyntheticVideo:
    """Ground truth and observations of one synthetic video (numpy, float64 unless noted).

    betas: (B,) shape coefficients (one body for the whole video).
    global_orient: (F, 3) root rotation, axis-angle, radians, camera frame (includes the 180° about x).
    body_pose: (F, 69) axis-angle, radians.
    transl: (F, 3) SMPL translation, camera frame, metres (pelvis = rest pelvis + transl).
    yaw: (F,) facing angle about the body's vertical axis, radians (0 = facing the camera).
    joints3d: (F, 24, 3) posed SMPL joints, camera frame, metres.
    keypoints3d: (F, J, 3) keypoints in ``spec.keypoint_format`` order, camera frame, metres (joints
        SMPL lacks, like PoseTrack's head_top, at their ``SYNTHETIC_PROXIES`` place).
    keypoints2d: (F, J, 3) observed x, y (pixels, x right, y down) and confidence (0 = missing).
    clean2d: (F, J, 2) noiseless projections of ``keypoints3d``, pixels.
    focal: focal length, pixels; principal_point: (2,) pixels.
    """

    spec: KeypointVideoSpec
    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    yaw: np.ndarray
    joints3d: np.ndarray
    keypoints3d: np.ndarray
    keypoints2d: np.ndarray
    clean2d: np.ndarray
    focal: float
    principal_point: np.ndarray


def project(points: Any, focal: Any, principal_point: Any) -> Any:
    """Pinhole projection, OpenCV convention (x right, y down, z forward).

    points: (N, P, 3) float, camera frame, metres (torch or numpy).
    focal: scalar or (N,) float, pixels. principal_point: (2,) or (N, 2) float, pixels.
    Returns (N, P, 2) float pixels, numpy when ``points`` is numpy. Depths under 1 cm are clamped.
    """
    pts = points if torch.is_tensor(points) else torch.as_tensor(np.asarray(points, dtype=np.float64))
    if pts.dim() != 3 or pts.shape[-1] != 3:
        raise ValueError(f"expected points of shape (N, P, 3), got {tuple(pts.shape)}")
    n = pts.shape[0]
    f = torch.as_tensor(focal, dtype=pts.dtype, device=pts.device).reshape(-1).expand(n)
    c = torch.as_tensor(principal_point, dtype=pts.dtype, device=pts.device).reshape(-1, 2).expand(n, 2)
    out = project_points(pts, f, c)
    return out if torch.is_tensor(points) else out.numpy()


# ----------------------------------------------------------------------------- motion


def _rot_about(axis: int, angle: np.ndarray) -> np.ndarray:
    """(F,) radians -> (F, 3, 3) float64 rotation about axis 0 (x), 1 (y) or 2 (z)."""
    angles = np.zeros(angle.shape + (3,))
    angles[..., axis] = angle
    return euler_angles_to_matrix(torch.as_tensor(angles), "XYZ").numpy()


def _axis_angle(rot: np.ndarray) -> np.ndarray:
    return matrix_to_axis_angle(torch.as_tensor(rot)).numpy()


def walking_pose(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """A walk-on-the-spot body pose sequence, (F, 69) axis-angle radians (SMPL joints 1..23).

    Knees bend only forwards (positive x) and elbows only in their natural direction (left
    negative y, right positive y), the signs SMPLify's angle prior expects.
    """
    t = np.arange(frames) / fps
    omega = 2 * np.pi * rng.uniform(0.6, 1.0)
    phase = rng.uniform(0, 2 * np.pi)
    s = np.sin(omega * t + phase)
    pose = np.zeros((frames, 24, 3))
    pose[:, 1:] = rng.normal(0, 0.03, size=(1, 23, 3))  # a personal posture
    hip = rng.uniform(0.1, 0.4)
    pose[:, 1, 0] += -hip * s - 0.05  # left hip flexion (forward is negative x)
    pose[:, 2, 0] += hip * s - 0.05
    knee = rng.uniform(0.2, 0.8)
    pose[:, 4, 0] = 0.1 + knee * (0.5 - 0.5 * np.cos(omega * t + phase + 0.5))  # knees bend forward (+x)
    pose[:, 5, 0] = 0.1 + knee * (0.5 - 0.5 * np.cos(omega * t + phase + 0.5 + np.pi))
    pose[:, 7, 0] += 0.1 * np.sin(omega * t + phase + 1.0)
    pose[:, 8, 0] += 0.1 * np.sin(omega * t + phase + 1.0 + np.pi)
    lean = rng.uniform(0.0, 0.1)
    for j in (3, 6, 9):
        pose[:, j, 0] += lean / 3
        pose[:, j, 1] += 0.04 * s  # torso twist
    look = rng.uniform(-0.3, 0.3)
    pose[:, 15, 1] += look + 0.1 * np.sin(2 * np.pi * 0.2 * t + phase)
    pose[:, 12, 0] += 0.05 * np.sin(2 * np.pi * 0.3 * t)
    # Arms: hang at the sides (about z), swing against the legs (about x); composed as matrices.
    down = rng.uniform(1.1, 1.35)
    swing = rng.uniform(0.1, 0.45)
    left = _rot_about(0, swing * s) @ _rot_about(2, np.full(frames, -down))
    right = _rot_about(0, -swing * s) @ _rot_about(2, np.full(frames, down))
    pose[:, 16] = _axis_angle(left) + pose[:, 16]
    pose[:, 17] = _axis_angle(right) + pose[:, 17]
    bend = rng.uniform(0.2, 1.0)
    pose[:, 18, 1] = -(0.15 + bend * (0.5 + 0.5 * np.sin(omega * t + phase)))  # left elbow: negative y
    pose[:, 19, 1] = 0.15 + bend * (0.5 - 0.5 * np.sin(omega * t + phase))  # right elbow: positive y
    return pose[:, 1:].reshape(frames, 69)


def _as_kernel(source: Mapping[str, Any] | SelectedPointsKernel) -> SelectedPointsKernel:
    if isinstance(source, SelectedPointsKernel):
        return source
    return build_points_kernel(source, dtype=torch.float64)


def make_keypoint_video(arrays_or_kernel: Mapping[str, Any] | SelectedPointsKernel,
                        spec: KeypointVideoSpec | None = None) -> SyntheticVideo:
    """Generate one synthetic keypoint video (ground truth + noisy observations).

    arrays_or_kernel: SMPL-format arrays (``make_procedural_body_model()``, an SMPL ``.pkl``'s dict)
        or a ``SelectedPointsKernel`` from ``build_points_kernel`` (it must hold smplx's keypoint
        vertices). Computed in float64 on the CPU.
    spec: what to generate (default ``KeypointVideoSpec()``).
    Returns a ``SyntheticVideo``.
    """
    spec = spec or KeypointVideoSpec()
    kernel = _as_kernel(arrays_or_kernel)
    rng = np.random.default_rng(spec.seed)
    f_count, fps = spec.frames, spec.fps
    t = np.arange(f_count) / fps
    betas = rng.normal(0, spec.shape_std, size=kernel.num_betas)
    body_pose = walking_pose(rng, f_count, fps)
    yaw0 = math.radians(spec.yaw_deg) + rng.uniform(-1, 1) * math.radians(spec.yaw_range_deg)
    yaw = yaw0 + 0.25 * np.sin(2 * np.pi * rng.uniform(0.05, 0.15) * t + rng.uniform(0, 2 * np.pi))
    pitch = rng.uniform(-0.1, 0.1)
    rot = rotation_x(torch.full((f_count,), pitch, dtype=torch.float64)) @ facing_rotation(torch.as_tensor(yaw))
    depth = rng.uniform(spec.min_depth, spec.max_depth)
    half_w = 0.25 * depth * spec.image_width / spec.focal_length
    drift = rng.uniform(0, 2 * np.pi, size=3)
    pelvis = np.stack([
        rng.uniform(-half_w, half_w) + 0.15 * np.sin(2 * np.pi * 0.07 * t + drift[0]),
        rng.uniform(-0.2, 0.0) + 0.02 * np.sin(2 * np.pi * 1.6 * t + drift[1]),
        depth + 0.3 * np.sin(2 * np.pi * 0.05 * t + drift[2]),
    ], axis=1)

    b = torch.as_tensor(betas)[None]
    pose_t = torch.as_tensor(body_pose)
    with torch.no_grad():
        rest_pelvis = kernel(b, torch.zeros(1, 3, dtype=torch.float64),
                             torch.zeros(1, 69, dtype=torch.float64)).joints[0, 0].numpy()
        go = matrix_to_axis_angle(rot)
        transl = torch.as_tensor(pelvis - rest_pelvis)
        out = kernel(b, go, pose_t, transl)
        joints = out.joints
        kp3d = format_points(kernel.smplx_layout(out), spec.keypoint_format)
    focal = float(spec.focal_length)
    pp = np.array([spec.image_width / 2.0, spec.image_height / 2.0])
    clean = project(kp3d.numpy(), focal, pp)
    kp2d = _observe(rng, clean, spec)
    return SyntheticVideo(spec=spec, betas=betas, global_orient=go.numpy(), body_pose=body_pose,
                          transl=transl.numpy(), yaw=yaw, joints3d=joints.numpy(), keypoints3d=kp3d.numpy(),
                          keypoints2d=kp2d, clean2d=clean, focal=focal, principal_point=pp)


def format_points(layout: torch.Tensor, fmt: str) -> torch.Tensor:
    """3D keypoints of format ``fmt`` from smplx's layout.

    layout: (N, 35, 3) float (``SelectedPointsKernel.smplx_layout``), metres. Joints with an SMPL
    correspondence are gathered; others are placed by ``SYNTHETIC_PROXIES`` (ValueError when a
    joint has neither). Returns (N, J, 3), same dtype and frame.
    """
    spec = get_format(fmt)
    cols = []
    for name, smpl in zip(spec.joints, spec.smpl):
        if smpl is not None:
            cols.append(layout[:, smpl])
        elif name in SYNTHETIC_PROXIES:
            a, b, t = SYNTHETIC_PROXIES[name]
            cols.append(layout[:, a] + t * (layout[:, b] - layout[:, a]))
        else:
            raise ValueError(f"format {fmt!r}: joint {name!r} has neither an SMPL correspondence nor a synthetic proxy")
    return torch.stack(cols, dim=1)


def _observe(rng: np.random.Generator, clean: np.ndarray, spec: KeypointVideoSpec) -> np.ndarray:
    """Noisy detections: (F, J, 3) pixels + confidence from clean (F, J, 2) projections."""
    shape = clean.shape[:2]
    u = rng.uniform(size=shape)
    dropped = u < spec.drop_fraction
    low = (u >= spec.drop_fraction) & (u < spec.drop_fraction + spec.low_conf_fraction)
    sigma = np.where(low, 3 * spec.noise_px, spec.noise_px)
    xy = clean + rng.normal(size=clean.shape) * sigma[..., None]
    conf = np.where(low, rng.uniform(0.1, 0.4, size=shape), rng.uniform(0.6, 1.0, size=shape))
    outside = (xy[..., 0] < 0) | (xy[..., 0] >= spec.image_width) | (xy[..., 1] < 0) | (xy[..., 1] >= spec.image_height)
    missing = dropped | outside
    conf = np.where(missing, 0.0, conf)
    xy = np.where(missing[..., None], 0.0, xy)
    return np.concatenate([xy, conf[..., None]], axis=-1)


def stack_videos(videos: Sequence[SyntheticVideo]) -> dict[str, np.ndarray]:
    """Concatenate videos into one fitting batch, one row per frame, video ``i`` as track ``i``.

    Returns keypoints (N, J, 3), track_index (N,) int64, frame (N,) int64, focal (N,),
    principal_point (N, 2), and the ground truth joints3d (N, 24, 3), keypoints3d (N, J, 3),
    betas (N, B), global_orient (N, 3), body_pose (N, 69), transl (N, 3).
    """
    if not videos:
        raise ValueError("expected at least one video, got none")
    cols: dict[str, list[np.ndarray]] = {}
    for i, v in enumerate(videos):
        f = v.keypoints2d.shape[0]
        parts = {
            "keypoints": v.keypoints2d, "track_index": np.full(f, i, dtype=np.int64),
            "frame": np.arange(f, dtype=np.int64), "focal": np.full(f, v.focal),
            "principal_point": np.repeat(v.principal_point[None], f, 0), "joints3d": v.joints3d,
            "keypoints3d": v.keypoints3d, "betas": np.repeat(v.betas[None], f, 0),
            "global_orient": v.global_orient, "body_pose": v.body_pose, "transl": v.transl,
        }
        for k, arr in parts.items():
            cols.setdefault(k, []).append(arr)
    return {k: np.concatenate(v) for k, v in cols.items()}
