"""Synthetic keypoint videos: deterministic, geometrically consistent, noisy as specified."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dl3d.fitting.priors import angle_prior
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, project, stack_videos


@pytest.fixture(scope="module")
def video(kernel):
    return make_keypoint_video(kernel, KeypointVideoSpec(frames=40, seed=5))


def test_deterministic_per_seed(kernel, video):
    again = make_keypoint_video(kernel, KeypointVideoSpec(frames=40, seed=5))
    np.testing.assert_array_equal(again.keypoints2d, video.keypoints2d)
    other = make_keypoint_video(kernel, KeypointVideoSpec(frames=40, seed=6))
    assert not np.allclose(other.body_pose, video.body_pose)


def test_from_arrays_equals_from_kernel(body_arrays, video):
    from_arrays = make_keypoint_video(body_arrays, KeypointVideoSpec(frames=40, seed=5))
    np.testing.assert_allclose(from_arrays.joints3d, video.joints3d, atol=1e-5)


def test_shapes_and_geometry(kernel, video):
    f = 40
    assert video.keypoints2d.shape == (f, 25, 3) and video.joints3d.shape == (f, 24, 3)
    assert video.body_pose.shape == (f, 69) and video.betas.shape == (10,)
    np.testing.assert_allclose(video.clean2d, project(video.keypoints3d, video.focal, video.principal_point))
    depth = video.joints3d[:, 0, 2]
    assert np.all((depth > 2.6) & (depth < 6.4))  # 3-6 m, plus slow drift
    # The SMPL parameters reproduce the stored joints (transl convention: pelvis = rest pelvis + transl).
    t = lambda x: torch.as_tensor(x)  # noqa: E731
    joints = kernel(t(video.betas)[None].float(), t(video.global_orient).float(), t(video.body_pose).float(),
                    t(video.transl).float()).joints
    np.testing.assert_allclose(joints.numpy(), video.joints3d, atol=1e-4)
    # Camera frame is y down: the head is above (smaller y than) the ankles.
    assert np.all(video.joints3d[:, 15, 1] < video.joints3d[:, 7, 1] - 1.0)


def test_noise_drops_and_confidence(video):
    conf = video.keypoints2d[..., 2]
    dropped = conf == 0
    assert 0.05 < dropped.mean() < 0.16  # 10 % dropped (plus any outside the image)
    assert np.all(video.keypoints2d[dropped][:, :2] == 0)
    confident = conf >= 0.6
    err = np.linalg.norm(video.keypoints2d[..., :2] - video.clean2d, axis=-1)[confident]
    assert 2.0 < err.mean() < 3.0  # Rayleigh mean of 2 px per-axis noise: 2.5 px
    low = (conf > 0) & (conf < 0.45)
    assert 0.02 < low.mean() < 0.09


def test_motion_is_smooth_and_natural(video):
    acc = video.joints3d[2:] - 2 * video.joints3d[1:-1] + video.joints3d[:-2]
    assert np.linalg.norm(acc, axis=-1).max() < 0.02  # metres per frame², 30 fps
    # Elbows and knees bend only their natural way: the angle prior stays below its zero-pose value.
    assert angle_prior(torch.as_tensor(video.body_pose)).max().item() < 4.0


def test_yaw_convention(kernel):
    front = make_keypoint_video(kernel, KeypointVideoSpec(frames=2, seed=0, yaw_deg=0, yaw_range_deg=0))
    back = make_keypoint_video(kernel, KeypointVideoSpec(frames=2, seed=0, yaw_deg=180, yaw_range_deg=0))
    nose_minus_head = lambda v: v.keypoints3d[:, 0, 2] - v.joints3d[:, 15, 2]  # noqa: E731
    assert np.all(nose_minus_head(front) < 0) and np.all(nose_minus_head(back) > 0)  # nose towards the camera


def test_stack_and_coco(kernel):
    vids = [make_keypoint_video(kernel, KeypointVideoSpec(frames=n, seed=n, keypoint_format="coco17")) for n in (3, 5)]
    batch = stack_videos(vids)
    assert batch["keypoints"].shape == (8, 17, 3)
    assert batch["track_index"].tolist() == [0] * 3 + [1] * 5 and batch["frame"].tolist() == [0, 1, 2, 0, 1, 2, 3, 4]


def test_spec_validation():
    with pytest.raises(ValueError, match=r"keypoint_format must be one of \['body25', 'body25b', 'coco17', 'coco18', 'posetrack'\], got 'body18'"):
        KeypointVideoSpec(keypoint_format="body18")
    with pytest.raises(ValueError, match=r"drop_fraction must be in \[0, 1\]"):
        KeypointVideoSpec(drop_fraction=1.5)
