"""Fitting's rotations come from pytorch3d.transforms: equal to the formulas they replaced, and to the
joints kernel's own Rodrigues (kept there for speed), with finite gradients at zero rotation."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch3d.transforms import axis_angle_to_matrix

from dl3d.body.joints_kernel import batch_rodrigues
from dl3d.fitting.camera import facing_rotation, rotation_x, rotation_y
from dl3d.synthetic.smpl_video import _rot_about


def test_rotation_x_and_y_equal_the_written_out_matrices():
    a = torch.linspace(-4.0, 4.0, 41, dtype=torch.float64)
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    rx = torch.stack([o, z, z, z, c, -s, z, s, c], -1).unflatten(-1, (3, 3))
    ry = torch.stack([c, z, s, z, o, z, -s, z, c], -1).unflatten(-1, (3, 3))
    torch.testing.assert_close(rotation_x(a), rx, rtol=0, atol=1e-15)
    torch.testing.assert_close(rotation_y(a), ry, rtol=0, atol=1e-15)
    # facing the camera: SMPL's +z (front) maps to the camera's -z (towards the viewer), y up to y down
    face = facing_rotation(torch.zeros(1, dtype=torch.float64))[0]
    torch.testing.assert_close(face @ torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64),
                               torch.tensor([0.0, -1.0, -1.0], dtype=torch.float64), rtol=0, atol=1e-15)


def test_rot_about_equals_rotation_x_and_the_z_formula():
    a = np.linspace(-3.0, 3.0, 13)
    np.testing.assert_allclose(_rot_about(0, a), rotation_x(torch.as_tensor(a)).numpy(), atol=1e-15)
    c, s = np.cos(a), np.sin(a)
    rz = np.stack([c, -s, 0 * a, s, c, 0 * a, 0 * a, 0 * a, 1 + 0 * a], -1).reshape(-1, 3, 3)
    np.testing.assert_allclose(_rot_about(2, a), rz, atol=1e-15)


def test_axis_angle_to_matrix_equals_the_kernel_rodrigues_with_finite_gradients_at_zero():
    g = torch.Generator().manual_seed(0)
    for scale in (1e-3, 0.5, 2.0, math.pi - 1e-3):
        r = torch.randn(64, 3, generator=g, dtype=torch.float64)
        r = r / r.norm(dim=-1, keepdim=True) * scale
        # the kernel follows smplx (angle = |r + 1e-8|): equal up to that offset
        torch.testing.assert_close(axis_angle_to_matrix(r), batch_rodrigues(r), rtol=0, atol=5e-8)
    assert (batch_rodrigues(r) - torch.eye(3, dtype=torch.float64)).abs().max() > 0.5, "not vacuous"
    delta = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 3, generator=g, dtype=torch.float64)
    (axis_angle_to_matrix(delta) * weights).sum().backward()
    assert torch.isfinite(delta.grad).all()
    # d/d(delta) of R = I + [delta]_x at zero: the skew-symmetric part of the weights
    expected = torch.stack([weights[2, 1] - weights[1, 2], weights[0, 2] - weights[2, 0], weights[1, 0] - weights[0, 1]])
    torch.testing.assert_close(delta.grad, expected.expand(4, 3), rtol=1e-12, atol=1e-12)


def test_side_view_turns_a_quarter_about_the_vertical_through_the_centre():
    from dl3d.video.overlay import side_view_vertices

    centre = torch.tensor([[0.5, -0.2, 3.0]], dtype=torch.float64)
    pts = centre[:, None] + torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    turned = side_view_vertices(pts, centre) - centre[:, None]
    # R_y(pi/2) = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]: x -> -z, y stays, z -> x
    torch.testing.assert_close(turned[0], torch.tensor([[0.0, 0.0, -1.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0]],
                                                       dtype=torch.float64), rtol=0, atol=1e-15)
