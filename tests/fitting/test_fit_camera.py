"""Camera initialisation: depth from torso length, facing from shoulder order, SMPLify's flip check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch3d.transforms import axis_angle_to_matrix

from dl3d.fitting.camera import (FACE_INDICES, TORSO_INDICES, ambiguous_facing, facing_camera, facing_rotation,
                                 fit_camera_with_flip, flip_about_vertical, init_camera_translation)
from dl3d.fitting.priors import builtin_pose_prior
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, project

FORWARD = torch.tensor([0.0, 0.0, 1.0])  # the SMPL body faces +z in its own frame


def _setup(kernel, spec: KeypointVideoSpec, clean: bool = False):
    """A video, its body-frame keypoints at the mean pose with the true shape, and torch views."""
    v = make_keypoint_video(kernel, spec)
    n = spec.frames
    f32 = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    betas = f32(v.betas)[None]
    pose = builtin_pose_prior().mixture_mean[None].expand(n, 69)
    zeros = torch.zeros(n, 3)
    body_kp = kernel.keypoints("body25", betas, zeros, pose) - kernel(betas, zeros, pose).joints[:, :1]
    kp = f32(v.keypoints2d)
    if clean:
        kp = torch.cat([f32(v.clean2d), torch.ones(n, kp.shape[1], 1)], dim=-1)
    return v, body_kp, kp, torch.full((n,), v.focal), f32(v.principal_point)[None].expand(n, 2)


def test_project_known_numbers():
    pts = np.array([[[0.0, 0.0, 2.0], [1.0, -0.5, 4.0]]])
    out = project(pts, 1000.0, [640.0, 360.0])
    np.testing.assert_allclose(out, [[[640.0, 360.0], [890.0, 235.0]]])
    assert torch.is_tensor(project(torch.as_tensor(pts), torch.tensor([1000.0]), torch.tensor([[640.0, 360.0]])))
    with pytest.raises(ValueError, match=r"expected points of shape \(N, P, 3\), got \(2, 3\)"):
        project(np.zeros((2, 3)), 1000.0, [0, 0])


def test_facing_rotation_convention():
    rot = facing_rotation(torch.tensor([0.0, math.pi, math.pi / 2]))
    fwd = rot @ FORWARD
    torch.testing.assert_close(fwd[0], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)  # towards the camera
    torch.testing.assert_close(fwd[1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)  # away from it
    torch.testing.assert_close(rot[0] @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, -1.0, 0.0]))  # head up
    torch.testing.assert_close(flip_about_vertical(rot[:1]), rot[1:2], atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_torso_depth_within_ten_percent_on_clean_data(kernel, seed):
    v, body_kp, kp, focal, pp = _setup(kernel, KeypointVideoSpec(frames=10, seed=seed), clean=True)
    rot = facing_rotation(torch.where(facing_camera(kp, "body25"), 0.0, math.pi))
    transl, valid = init_camera_translation(kp, body_kp @ rot.transpose(1, 2), "body25", focal, pp)
    assert valid.all()
    truth = torch.as_tensor(v.joints3d[:, 0], dtype=torch.float32)
    rel = (transl[:, 2] - truth[:, 2]).abs() / truth[:, 2]
    assert rel.max().item() < 0.10, rel
    assert (transl[:, :2] - truth[:, :2]).abs().max().item() < 0.15  # metres, x and y from the torso centre


def test_missing_torso_gives_invalid_rows(kernel):
    _, body_kp, kp, focal, pp = _setup(kernel, KeypointVideoSpec(frames=3, seed=0), clean=True)
    kp[1, [2, 5, 9, 12], 2] = 0.0  # no shoulders, no hips
    transl, valid = init_camera_translation(kp, body_kp, "body25", focal, pp)
    assert valid.tolist() == [True, False, True] and torch.isnan(transl[1]).all()


@pytest.mark.parametrize("yaw", [0.0, 180.0])
def test_facing_from_shoulder_order(kernel, yaw):
    _, _, kp, _, _ = _setup(kernel, KeypointVideoSpec(frames=8, seed=2, yaw_deg=yaw, yaw_range_deg=10), clean=True)
    assert facing_camera(kp, "body25").tolist() == [yaw == 0.0] * 8
    assert not ambiguous_facing(kp, "body25").any()


@pytest.mark.parametrize("yaw", [90.0, -90.0, 180.0])
def test_flip_check_recovers_facing_from_a_wrong_start(kernel, yaw):
    v, body_kp, kp, focal, pp = _setup(kernel, KeypointVideoSpec(frames=12, seed=1, yaw_deg=yaw, yaw_range_deg=5))
    truth = axis_angle_to_matrix(torch.as_tensor(v.global_orient, dtype=torch.float32))
    pelvis = torch.as_tensor(v.joints3d[:, 0], dtype=torch.float32) + torch.tensor([0.1, 0.05, 0.3])
    wrong = flip_about_vertical(truth)  # start every frame facing the wrong way
    if abs(yaw) == 90.0:
        assert ambiguous_facing(kp, "body25").all()  # side views trigger the check
    agree = lambda rot: ((rot @ FORWARD) * (truth @ FORWARD)).sum(-1) > 0  # noqa: E731
    weight = torch.zeros_like(kp[..., 2])  # the camera stage's keypoints: torso and face
    idx = list(TORSO_INDICES["body25"] + FACE_INDICES["body25"])
    weight[:, idx] = kp[:, idx, 2]
    none = torch.zeros(12, dtype=torch.bool)
    rot, _, loss_plain, _ = fit_camera_with_flip(body_kp, kp, weight, focal, pp, wrong, pelvis, none)
    assert not agree(rot).any()  # Adam alone stays in the wrong facing ...
    rot, _, loss, flipped = fit_camera_with_flip(body_kp, kp, weight, focal, pp, wrong, pelvis, ~none)
    assert agree(rot).all() and flipped.all()  # ... the flip check turns it round
    assert (loss < 0.5 * loss_plain).all()
