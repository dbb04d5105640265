"""Pose metrics against answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dl3d.metrics import acceleration_error, mpjpe, pa_mpjpe, procrustes_align, reprojection_error_px


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


@pytest.fixture
def joints() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.3, size=(4, 24, 3))


def test_mpjpe_known_offset(joints):
    pred = joints + np.array([0.03, 0.04, 0.0])  # every joint 5 cm away
    np.testing.assert_allclose(mpjpe(pred, joints), np.full(4, 0.05), atol=1e-12)


def test_similarity_copy_has_zero_pa_mpjpe_but_large_mpjpe(joints):
    rot = _rot_z(0.7) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0.0]])
    copy = 1.3 * joints @ rot.T + np.array([0.5, -1.0, 4.0])
    assert np.all(pa_mpjpe(copy, joints) < 1e-9)
    assert np.all(mpjpe(copy, joints) > 1.0)
    np.testing.assert_allclose(procrustes_align(copy, joints), joints, atol=1e-9)


def test_pa_mpjpe_keeps_rotations_proper(joints):
    mirrored = joints * np.array([-1.0, 1.0, 1.0])  # a reflection is not a rotation
    assert np.all(pa_mpjpe(mirrored, joints) > 0.05)


def test_pa_mpjpe_of_noise_is_below_mpjpe(joints):
    noisy = joints + np.random.default_rng(1).normal(0, 0.01, size=joints.shape)
    pa, plain = pa_mpjpe(noisy, joints), mpjpe(noisy, joints)
    assert np.all(pa <= plain + 1e-12) and np.all(pa > 0.005)


def test_torch_in_torch_out(joints):
    out = pa_mpjpe(torch.as_tensor(joints, dtype=torch.float32), torch.as_tensor(joints))
    assert torch.is_tensor(out) and out.shape == (4,) and out.dtype == torch.float64
    assert isinstance(mpjpe(joints, joints), np.ndarray)


def test_acceleration_error_known_answer():
    t = np.arange(10, dtype=np.float64)
    gt = np.zeros((10, 2, 3))
    gt[:, :, 0] = 0.01 * t[:, None]  # constant velocity: zero acceleration
    pred = gt.copy()
    pred[:, 0, 1] = 0.002 * t ** 2  # joint 0 accelerates: second difference 0.004 everywhere
    # norm 0.004 for joint 0, 0 for joint 1 -> mean 0.002 metres per frame².
    assert acceleration_error(pred, gt) == pytest.approx(0.002, abs=1e-12)
    assert acceleration_error(gt + 1.0, gt) == pytest.approx(0.0, abs=1e-12)  # offsets do not accelerate
    assert math.isnan(acceleration_error(pred[:2], gt[:2]))


def test_reprojection_error_counts_confident_finite_keypoints_only():
    pred = np.zeros((3, 4, 2))
    gt = np.zeros((3, 4, 3))
    gt[0, :, 0] = [3.0, 4.0, 100.0, 0.0]  # keypoint 2 not confident
    conf = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1.0]])
    gt[2, 0, :2] = np.nan  # non-finite detections never count
    gt[2, 1, :2] = [6.0, 8.0]
    err = reprojection_error_px(pred, gt, conf)
    assert err[0] == pytest.approx((3 + 4 + 0) / 3)
    assert math.isnan(err[1])
    assert err[2] == pytest.approx(10 / 3)


@pytest.mark.parametrize("fn", [mpjpe, pa_mpjpe, acceleration_error])
def test_shape_errors_name_the_expected_shape(fn, joints):
    with pytest.raises(ValueError, match=r"expected gt of shape \(4, 24, 3\)"):
        fn(joints, joints[:, :17])
    with pytest.raises(ValueError, match=r"expected pred of shape \(N, J, 3\), got \(4, 24, 2\)"):
        fn(joints[..., :2], joints[..., :2])


def test_reprojection_shape_errors():
    with pytest.raises(ValueError, match=r"expected conf of shape \(2, 5\), got \(2, 4\)"):
        reprojection_error_px(np.zeros((2, 5, 2)), np.zeros((2, 5, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"expected pred_2d of shape \(N, J, 2\)"):
        reprojection_error_px(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), np.zeros((2, 5)))
