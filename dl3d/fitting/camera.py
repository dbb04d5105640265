"""Camera initialisation for SMPLify: depth from torso length, and the 180° flip check.

Camera convention: OpenCV pinhole (x right, y down, z forward), the camera fixed at the origin; the
body's root rotation and translation carry the whole rigid motion. The SMPL body is y-up and faces
+z, so a body upright and facing the camera has root rotation ``R_x(pi)`` (``facing_rotation``).

SMPLify (Bogo et al. 2016, ``fit_3d.py``): depth ``f * L3d / L2d`` from the ratio of the model's
3D torso length (shoulder to hip) to the detected 2D torso length; then camera translation and
body orientation are optimised on the torso joints; when the 2D shoulders are close (a side
view), the fit is also run with the body rotated 180° about its vertical axis and the lower error
is kept. dl3d adds the face keypoints (nose, eyes, ears) to that torso-only stage, because they
tell front from back, and uses a scale-free shoulder threshold (a fraction of the torso length).
"""

from __future__ import annotations

import math

import torch
from pytorch3d.transforms import axis_angle_to_matrix, euler_angles_to_matrix
from torch import Tensor

from dl3d.fitting.adam import FusedAdam
from dl3d.fitting.objective import gmof, project_points
from dl3d.keypoints.formats import FORMATS, get_format

__all__ = [
    "FACE_INDICES",
    "TORSO_INDICES",
    "ambiguous_facing",
    "facing_camera",
    "facing_rotation",
    "fit_camera",
    "fit_camera_with_flip",
    "flip_about_vertical",
    "init_camera_translation",
    "rotation_x",
    "rotation_y",
]

TORSO_INDICES: dict[str, tuple[int, int, int, int]] = {n: f.torso for n, f in FORMATS.items()}
"""Keypoint indices (left shoulder, right shoulder, left hip, right hip) per keypoint format
(``KeypointFormat.torso``)."""

FACE_INDICES: dict[str, tuple[int, ...]] = {n: f.face for n, f in FORMATS.items()}
"""Fitted nose, eyes and ears per keypoint format (``KeypointFormat.face``)."""


def _check_fmt(fmt: str) -> None:
    get_format(fmt)


def rotation_x(angle: Tensor) -> Tensor:
    """(...,) radians -> (..., 3, 3) rotation about x (pytorch3d's X Euler rotation)."""
    z = torch.zeros_like(angle)
    return euler_angles_to_matrix(torch.stack([angle, z, z], -1), "XYZ")


def rotation_y(angle: Tensor) -> Tensor:
    """(...,) radians -> (..., 3, 3) rotation about y (pytorch3d's Y Euler rotation)."""
    z = torch.zeros_like(angle)
    return euler_angles_to_matrix(torch.stack([z, angle, z], -1), "XYZ")


def facing_rotation(yaw: Tensor) -> Tensor:
    """Root rotation of an upright body turned by ``yaw`` about its own vertical axis.

    yaw: (N,) float, radians; 0 = facing the camera, pi = back to the camera, pi/2 = the body's
        left side towards the camera.
    Returns (N, 3, 3) float: ``R_x(pi) @ R_y(yaw)`` (SMPL y-up to camera y-down, then the yaw).
    """
    return rotation_x(torch.full_like(yaw, math.pi)) @ rotation_y(yaw)


def flip_about_vertical(rot: Tensor) -> Tensor:
    """The body rotated 180° about its own vertical (SMPL y) axis: ``rot @ R_y(pi)``.

    rot: (N, 3, 3) float root rotations. Returns (N, 3, 3) float.
    """
    return rot @ rotation_y(rot.new_full(rot.shape[:1], math.pi))


def _pair(kp: Tensor, conf: Tensor, a: int, b: int) -> tuple[Tensor, Tensor]:
    """2D distance of keypoints a, b (N,) and whether both are confident (N,)."""
    ok = (conf[:, a] > 0) & (conf[:, b] > 0)
    return torch.linalg.vector_norm(kp[:, a] - kp[:, b], dim=-1), ok


def _torso_length_2d(keypoints: Tensor, fmt: str) -> tuple[Tensor, Tensor]:
    """Mean 2D shoulder-to-hip length over the confident sides (N,), and whether any side is (N,)."""
    ls, rs, lh, rh = get_format(fmt).torso
    xy, conf = keypoints[..., :2], keypoints[..., 2]
    left, lok = _pair(xy, conf, ls, lh)
    right, rok = _pair(xy, conf, rs, rh)
    count = lok.to(xy.dtype) + rok.to(xy.dtype)
    length = (left * lok + right * rok) / count.clamp_min(1)
    return length, count > 0


def facing_camera(keypoints: Tensor, fmt: str) -> Tensor:
    """Whether each person faces the camera, from the left/right order of shoulders (else hips).

    A person facing the camera has their left shoulder on the image's right (larger x).
    keypoints: (N, J, 3) float, pixels + confidence (0 = missing).
    Returns (N,) bool; True where neither shoulders nor hips are both visible.
    """
    _check_fmt(fmt)
    ls, rs, lh, rh = get_format(fmt).torso
    x, conf = keypoints[..., 0], keypoints[..., 2]
    sh_ok = (conf[:, ls] > 0) & (conf[:, rs] > 0)
    hip_ok = (conf[:, lh] > 0) & (conf[:, rh] > 0)
    dx = torch.where(sh_ok, x[:, ls] - x[:, rs], torch.where(hip_ok, x[:, lh] - x[:, rh], torch.ones_like(x[:, 0])))
    return dx >= 0


def ambiguous_facing(keypoints: Tensor, fmt: str, ratio: float = 0.4) -> Tensor:
    """SMPLify's flip-check trigger: 2D shoulders closer than ``ratio`` times the 2D torso length.

    keypoints: (N, J, 3) float, pixels + confidence. ratio: scale-free threshold (SMPLify used a
    fixed 25 px on LSP crops). Rows missing a shoulder or the torso count as ambiguous.
    Returns (N,) bool.
    """
    _check_fmt(fmt)
    ls, rs, _, _ = get_format(fmt).torso
    width, wok = _pair(keypoints[..., :2], keypoints[..., 2], ls, rs)
    torso, tok = _torso_length_2d(keypoints, fmt)
    return ~(wok & tok) | (width < ratio * torso)


def init_camera_translation(keypoints: Tensor, model_keypoints: Tensor, fmt: str,
                            focal: Tensor, principal_point: Tensor) -> tuple[Tensor, Tensor]:
    """Translation that puts the model's torso where the detected torso is (SMPLify's ``guess_init``).

    Depth is ``focal * L3d / L2d`` with L the mean shoulder-to-hip length over the sides visible in
    2D; x, y back-project the 2D torso centre (mean of the confident torso keypoints) at that depth.
    keypoints: (N, J, 3) float, observed pixels + confidence (0 = missing), finite.
    model_keypoints: (N, J, 3) float, the model's keypoints already rotated into the camera
        orientation, not yet translated, metres.
    focal: (N,) float, pixels; principal_point: (N, 2) float, pixels.
    Returns ``transl`` (N, 3) float, metres, to add to ``model_keypoints``, and ``valid`` (N,) bool
    (False where no torso side is visible; ``transl`` is then NaN).
    """
    _check_fmt(fmt)
    n, j = keypoints.shape[:2]
    if model_keypoints.shape != (n, j, 3):
        raise ValueError(f"expected model_keypoints of shape ({n}, {j}, 3), got {tuple(model_keypoints.shape)}")
    torso = list(get_format(fmt).torso)
    l2d, ok = _torso_length_2d(keypoints, fmt)
    ls, rs, lh, rh = torso
    l3d_left = torch.linalg.vector_norm(model_keypoints[:, ls] - model_keypoints[:, lh], dim=-1)
    l3d_right = torch.linalg.vector_norm(model_keypoints[:, rs] - model_keypoints[:, rh], dim=-1)
    conf = keypoints[..., 2]
    lok, rok = (conf[:, ls] > 0) & (conf[:, lh] > 0), (conf[:, rs] > 0) & (conf[:, rh] > 0)
    l3d = (l3d_left * lok + l3d_right * rok) / (lok.to(l3d_left.dtype) + rok.to(l3d_left.dtype)).clamp_min(1)
    ok = ok & (l2d > 1e-3)
    depth = focal * l3d / l2d.clamp_min(1e-3)
    w = (conf[:, torso] > 0).to(keypoints.dtype)  # (N, 4)
    centre_2d = (keypoints[:, torso, :2] * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
    centre_3d = (model_keypoints[:, torso] * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
    xy = (centre_2d - principal_point) * (depth / focal)[:, None]
    target = torch.cat([xy, depth[:, None]], dim=1)
    transl = target - centre_3d
    transl = torch.where(ok[:, None], transl, torch.full_like(transl, float("nan")))
    return transl, ok


def fit_camera(model_keypoints: Tensor, keypoints: Tensor, weight: Tensor, focal: Tensor,
               principal_point: Tensor, rot0: Tensor, transl0: Tensor, *, iters: int = 40,
               lr: float = 0.02, sigma: float = 100.0, depth_weight: float = 100.0) -> tuple[Tensor, Tensor, Tensor]:
    """SMPLify's camera stage: optimise root rotation and translation with the body held fixed.

    The rotation is ``rodrigues(delta) @ rot0`` with ``delta`` optimised from zero (no axis-angle
    wrap-around near pi); the pose and shape do not change, so no body model runs here.
    model_keypoints: (N, J, 3) float, body-frame keypoints relative to the root joint, metres.
    keypoints: (N, J, 3) float, observed pixels (finite; zero-filled where missing).
    weight: (N, J) float, per-keypoint weight (confidence x joint weight; 0 = ignore).
    focal: (N,) float, pixels; principal_point: (N, 2) float, pixels.
    rot0: (N, 3, 3) float initial root rotation; transl0: (N, 3) float initial root position, metres.
    iters, lr: Adam iterations and step (radians / metres). sigma: Geman-McClure scale, pixels.
    depth_weight: pixels² per metre² keeping the depth near ``transl0`` (SMPLify: 100² ... here 100).
    Returns rotation (N, 3, 3), root position (N, 3) and final data loss (N,) (pixels²), detached.
    """
    delta = torch.zeros_like(transl0, requires_grad=True)
    transl = transl0.detach().clone().requires_grad_(True)
    depth0 = transl0[:, 2].detach()
    opt = FusedAdam([delta, transl], lr=lr)

    def data_loss() -> Tensor:
        rot = axis_angle_to_matrix(delta) @ rot0
        cam = model_keypoints @ rot.transpose(1, 2) + transl[:, None]
        res = gmof(project_points(cam, focal, principal_point) - keypoints[..., :2], sigma).sum(-1)
        return (weight * weight * res).sum(-1)

    for _ in range(iters):
        opt.zero_grad()
        loss = data_loss() + depth_weight * (transl[:, 2] - depth0) ** 2
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        final = data_loss()
        return axis_angle_to_matrix(delta) @ rot0, transl.detach().clone(), final


def fit_camera_with_flip(model_keypoints: Tensor, keypoints: Tensor, weight: Tensor, focal: Tensor,
                         principal_point: Tensor, rot0: Tensor, transl0: Tensor, candidates: Tensor,
                         **kwargs: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``fit_camera`` plus SMPLify's flip check on the ``candidates`` rows (side views).

    Those rows are also fitted from ``flip_about_vertical(rot0)`` (one batch with the others) and
    keep whichever start ends with the lower data loss. Arguments as ``fit_camera``;
    candidates: (N,) bool (e.g. ``ambiguous_facing``); kwargs: ``fit_camera``'s options.
    Returns rotation (N, 3, 3), root position (N, 3), data loss (N,), flipped (N,) bool.
    """
    n = rot0.shape[0]
    idx = torch.nonzero(candidates).reshape(-1)
    both = lambda x: torch.cat([x, x[idx]])  # noqa: E731
    rot, transl, loss = fit_camera(both(model_keypoints), both(keypoints), both(weight), both(focal),
                                   both(principal_point), torch.cat([rot0, flip_about_vertical(rot0[idx])]),
                                   both(transl0), **kwargs)
    better = loss[n:] < loss[idx]
    take = idx[better]
    rot_f, transl_f, loss_f = rot[n:][better], transl[n:][better], loss[n:][better]
    rot, transl, loss = rot[:n].clone(), transl[:n].clone(), loss[:n].clone()
    rot[take], transl[take], loss[take] = rot_f, transl_f, loss_f
    flipped = torch.zeros(n, dtype=torch.bool, device=rot0.device)
    flipped[take] = True
    return rot, transl, loss, flipped
