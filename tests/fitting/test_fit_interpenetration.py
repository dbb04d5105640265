"""Interpenetration term: zero for apart spheres, positive and differentiable for overlapping ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dl3d.fitting.interpenetration import PARTS, sphere_body, sphere_overlap
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video


def test_sphere_overlap_known_values():
    centres = torch.tensor([[[0.0, 0, 0], [0.15, 0, 0], [2.0, 0, 0]]], requires_grad=True)
    radii = torch.tensor([[0.1, 0.1, 0.1]])
    pairs = torch.tensor([[0, 1], [0, 2]])
    pen = sphere_overlap(centres, radii, pairs)
    assert pen.item() == pytest.approx(0.05 ** 2, rel=1e-5)  # 5 cm overlap; the far pair adds nothing
    pen.sum().backward()
    # Pushes sphere 0 towards -x and sphere 1 towards +x (gradient descent separates them).
    assert centres.grad[0, 0, 0] > 0 and centres.grad[0, 1, 0] < 0 and centres.grad[0, 2].abs().sum() == 0
    far = sphere_overlap(centres.detach() * 10, radii, pairs)
    assert far.item() == 0.0


def test_coincident_spheres_have_finite_gradient():
    centres = torch.zeros(1, 2, 3, requires_grad=True)
    pen = sphere_overlap(centres, torch.tensor([[0.1, 0.1]]), torch.tensor([[0, 1]]))
    pen.sum().backward()
    assert pen.item() == pytest.approx(0.04, rel=1e-4) and torch.isfinite(centres.grad).all()


def test_body_spheres_do_not_touch_in_walking_poses(kernel):
    spheres = sphere_body()
    video = make_keypoint_video(kernel, KeypointVideoSpec(frames=20, seed=3))
    pen = spheres(torch.as_tensor(video.joints3d, dtype=torch.float32))
    assert pen.shape == (20,) and torch.all(pen == 0)


def test_hand_through_the_torso_is_penalised(kernel):
    spheres = sphere_body()
    pose = torch.zeros(2, 69)
    pose[1, 3 * 15 + 1] = -1.5708  # left shoulder (joint 16): upper arm pointing forwards ...
    pose[1, 3 * 17 + 1] = -2.4  # ... and the left elbow (joint 18) folded so the hand is inside the chest
    joints = kernel(torch.zeros(1, 10), torch.zeros(2, 3), pose).joints.detach().requires_grad_(True)
    pen = spheres(joints)
    assert pen[0].item() == 0.0 and pen[1].item() > 0.01
    pen.sum().backward()
    assert torch.isfinite(joints.grad).all() and joints.grad[1].abs().sum() > 0


def test_radii_follow_bone_lengths_and_are_detached(kernel):
    spheres = sphere_body(scale=0.5)
    joints = kernel(torch.zeros(1, 10), torch.zeros(1, 3), torch.zeros(1, 69)).joints
    centres, radii = spheres.spheres(joints)
    assert centres.shape == (1, spheres.ratio.numel(), 3) and not radii.requires_grad
    tall = spheres.spheres(joints * 1.1)[1]
    torch.testing.assert_close(tall, radii * 1.1)
    forearm = [i for i, o in enumerate(spheres.owner.tolist()) if spheres.part_names[o] == "l_forearm"]
    length = torch.linalg.vector_norm(joints[0, 20] - joints[0, 18])
    assert radii[0, forearm[0]].item() == pytest.approx(0.5 * 0.15 * length.item(), rel=1e-5)


def test_template_radii_are_close_to_hand_chosen_ones(body_arrays):
    template = sphere_body(body_arrays)
    hand = sphere_body()
    ratio = (template.ratio / hand.ratio).numpy()
    assert np.all((ratio > 0.6) & (ratio < 1.4)), dict(zip([p.name for p in PARTS], ratio))


def test_joint_shape_error():
    with pytest.raises(ValueError, match=r"expected joints of shape \(N, 24, 3\), got \(2, 45, 3\)"):
        sphere_body()(torch.zeros(2, 45, 3))
