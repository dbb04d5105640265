"""The synthetic cameras' rotations (pytorch3d.transforms) equal the hand-written formulas they replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dl3d.synthetic.cameras import axis_angle_rotation, camera_pose, relative_motion, rotation_about_z


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    """Naive reference: I + sin(a) K + (1 - cos(a)) K^2 with K the cross-product matrix of the unit axis."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


@pytest.mark.parametrize("seed", range(4))
def test_axis_angle_rotation_equals_rodrigues(seed):
    rng = np.random.default_rng(seed)
    for angle in (*rng.uniform(-math.pi, math.pi, 20), 0.0, math.pi, 1e-9):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        np.testing.assert_allclose(axis_angle_rotation(axis, angle), _rodrigues(axis, angle), atol=1e-12)
    assert np.abs(_rodrigues(axis, 1.0) - np.eye(3)).max() > 0.1, "the comparison is not vacuous"


def test_rotation_about_z_equals_the_written_out_matrix():
    for angle in (-2.5, -0.1, 0.0, 0.3, math.pi / 2, 3.0):
        c, s = math.cos(angle), math.sin(angle)
        np.testing.assert_allclose(rotation_about_z(angle), [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-15)
    # positive angles turn +x towards +y (right-handed about z)
    np.testing.assert_allclose(rotation_about_z(math.pi / 2) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-15)


def test_roll_turns_the_image_and_relative_motion_stays_rigid():
    eye = np.array([1.0, 2.0, 1.5])
    flat, rolled = camera_pose(eye, 0.4, -0.1), camera_pose(eye, 0.4, -0.1, roll=0.2)
    np.testing.assert_allclose(rolled[:3, :3], rotation_about_z(0.2) @ flat[:3, :3], atol=1e-15)
    np.testing.assert_allclose(rolled[:3, :3][2], flat[:3, :3][2], atol=1e-15)  # the optical axis does not move
    D = relative_motion(np.random.default_rng(3), max_rotation_deg=15.0, max_translation=0.3)
    R = D[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    angle = math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
    assert 0.0 < angle <= 15.0 and np.linalg.norm(R.T @ D[:3, 3]) <= 0.3
