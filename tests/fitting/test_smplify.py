"""SMPLify on synthetic keypoint videos of the procedural body (NOT SMPL): accuracy, temporal term,
degenerate rows, input checks, presets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dl3d.fitting import SMPLIFY_PRESETS, FitInit, SmplifyConfig, fit_smplify, write_gmm_file
from dl3d.fitting.priors import builtin_pose_arrays
from dl3d.metrics import acceleration_error, pa_mpjpe
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, stack_videos


def _fit(kernel, b: dict, cfg: SmplifyConfig, fmt: str = "body25", **kw):
    return fit_smplify(kernel, b["keypoints"], fmt, b["track_index"], b["frame"], b["focal"], b["principal_point"],
                       cfg, **kw)


@pytest.fixture(scope="module")
def batch(kernel) -> dict:
    """3 videos x 30 frames, 2 px noise, 10 % dropped keypoints, random facing (front, side, back)."""
    return stack_videos([make_keypoint_video(kernel, KeypointVideoSpec(frames=30, seed=s)) for s in range(3)])


@pytest.fixture(scope="module")
def fits(kernel, batch) -> dict:
    return {name: _fit(kernel, batch, SMPLIFY_PRESETS[name]) for name in ("default", "per-frame")}


def test_default_fit_is_accurate(fits, batch):
    r = fits["default"]
    pa = pa_mpjpe(r.joints3d, batch["joints3d"]) * 1000
    for t in range(3):
        per_video = pa[batch["track_index"] == t].mean()
        assert per_video <= 50.0, f"video {t}: PA-MPJPE {per_video:.1f} mm"
    assert pa.mean() <= 40.0
    assert np.median(r.reprojection_error_px) <= 3.0  # 2 px noise: about 2.8 px even for the true bodies
    assert (r.status == "ok").all() and r.loss.shape == (90,) and np.isfinite(r.loss).all()
    for t in range(3):  # one shape per track
        betas = r.betas[batch["track_index"] == t]
        assert np.ptp(betas, axis=0).max() == 0.0


def test_temporal_term_lowers_acceleration_error(fits, batch):
    def accel(r, t):
        rows = batch["track_index"] == t
        return acceleration_error(r.joints3d[rows], batch["joints3d"][rows]) * 1000

    for t in range(3):
        assert accel(fits["default"], t) < 0.5 * accel(fits["per-frame"], t)
    per_frame_pa = pa_mpjpe(fits["per-frame"].joints3d, batch["joints3d"]).mean()
    assert pa_mpjpe(fits["default"].joints3d, batch["joints3d"]).mean() < per_frame_pa
    assert not np.allclose(fits["per-frame"].betas[0], fits["per-frame"].betas[1])  # shape per frame


def test_degenerate_rows_get_a_status_and_others_still_fit(kernel):
    b = stack_videos([make_keypoint_video(kernel, KeypointVideoSpec(frames=n, seed=s)) for n, s in ((16, 4), (1, 5))])
    truth = b["joints3d"]
    kp = b["keypoints"].copy()
    kp[3, 7, 0] = np.nan  # a detector wrote NaN
    kp[5, :, 2] = 0.0  # nobody in this frame
    kp[8, 4:, 2] = 0.0  # four keypoints only
    kp[9] = np.nan  # everything NaN
    b = dict(b, keypoints=kp)
    r = _fit(kernel, b, SMPLIFY_PRESETS["fast"])
    expected = ["ok"] * 17
    expected[3], expected[5], expected[9] = "nan_keypoints", "no_keypoints", "nan_keypoints"
    expected[8] = "too_few_keypoints"
    assert r.status.tolist() == expected
    for field in ("betas", "global_orient", "body_pose", "transl", "joints3d", "loss"):
        assert np.isfinite(getattr(r, field)).all(), field  # NaNs do not poison the batch
    assert np.isnan(r.reprojection_error_px[[5, 9]]).all() and np.isfinite(r.reprojection_error_px[[0, 3, 8]]).all()
    ok = r.status == "ok"
    pa = pa_mpjpe(r.joints3d, truth) * 1000
    assert pa[ok].mean() < 50.0
    assert pa[5] < 80.0  # the empty frame is interpolated from its neighbours


def test_batches_without_usable_rows_or_rows_at_all(kernel):
    kp = np.zeros((3, 25, 3))
    r = fit_smplify(kernel, kp, "body25", [0, 0, 1], [0, 1, 0], 1000.0, [640.0, 360.0],
                    replace(SMPLIFY_PRESETS["fast"], stage_iters=(2, 2, 2, 2), refine_iters=2))
    assert r.status.tolist() == ["no_keypoints"] * 3 and np.isfinite(r.body_pose).all()
    empty = fit_smplify(kernel, np.zeros((0, 25, 3)), "body25", [], [], [], np.zeros((0, 2)))
    assert empty.body_pose.shape == (0, 69) and empty.status.shape == (0,)


def test_row_order_does_not_matter(kernel):
    b = stack_videos([make_keypoint_video(kernel, KeypointVideoSpec(frames=10, seed=s)) for s in (7, 8)])
    cfg = replace(SMPLIFY_PRESETS["fast"], stage_iters=(5, 5, 5, 5), refine_iters=5, camera_iters=10)
    r = _fit(kernel, b, cfg)
    perm = np.random.default_rng(0).permutation(20)
    shuffled = _fit(kernel, {k: v[perm] for k, v in b.items()}, cfg)
    np.testing.assert_allclose(shuffled.body_pose, r.body_pose[perm], atol=1e-4)
    assert shuffled.status.tolist() == r.status[perm].tolist()


def test_gmm_file_in_config_and_coco_keypoints(kernel, tmp_path):
    b = stack_videos([make_keypoint_video(kernel, KeypointVideoSpec(frames=12, seed=9, keypoint_format="coco17"))])
    path = write_gmm_file(tmp_path / "gmm_01.pkl", **builtin_pose_arrays())
    cfg = replace(SMPLIFY_PRESETS["fast"], gmm_path=str(path))
    from_file = _fit(kernel, b, cfg, fmt="coco17")
    builtin = _fit(kernel, b, SMPLIFY_PRESETS["fast"], fmt="coco17")
    np.testing.assert_allclose(from_file.body_pose, builtin.body_pose, atol=1e-4)
    assert (pa_mpjpe(from_file.joints3d, b["joints3d"]) * 1000).mean() < 60.0


def test_init_with_a_camera_skips_the_camera_stage(kernel):
    b = stack_videos([make_keypoint_video(kernel, KeypointVideoSpec(frames=12, seed=10))])
    init = FitInit(betas=b["betas"], global_orient=b["global_orient"], body_pose=b["body_pose"], transl=b["transl"])
    r = _fit(kernel, b, SMPLIFY_PRESETS["fast"], init=init)
    assert "camera_seconds" not in r.stats
    assert (pa_mpjpe(r.joints3d, b["joints3d"]) * 1000).mean() < 40.0
    np.testing.assert_allclose(r.transl[:, 2], b["transl"][:, 2], atol=0.5)


def test_input_errors_name_expected_shapes(kernel):
    kp = np.zeros((4, 17, 3))
    args = ([0] * 4, list(range(4)), [1000.0] * 4, [[640.0, 360.0]] * 4)
    with pytest.raises(ValueError, match=r"expected keypoints of shape \(N, 25, 3\) for 'body25', got \(4, 17, 3\)"):
        fit_smplify(kernel, kp, "body25", *args)
    with pytest.raises(ValueError, match=r"expected track_index of shape \(4,\), got \(3,\)"):
        fit_smplify(kernel, kp, "coco17", [0] * 3, *args[1:])
    with pytest.raises(ValueError, match=r"expected fmt in \['body25', 'body25b', 'coco17', 'coco18', 'posetrack'\], got 'openpose'"):
        fit_smplify(kernel, kp, "openpose", *args)


def test_config_validation():
    with pytest.raises(ValueError, match=r"shape_prior_weights must have one value per stage \(4, like stage_iters\)"):
        SmplifyConfig(shape_prior_weights=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="keyframe_stride must be >= 1"):
        SmplifyConfig(keyframe_stride=0)
    assert set(SMPLIFY_PRESETS) == {"default", "fast", "per-frame"}
    pf = SMPLIFY_PRESETS["per-frame"]
    assert pf.temporal_weight == 0 and not pf.shared_shape and not pf.warm_start


def test_joints_smpl_lacks_are_ignored_by_the_fit(kernel):
    """PoseTrack's head_bottom/head_top (no SMPL correspondence) never move the fit: moving them changes
    nothing, while moving the nose does."""
    b = stack_videos([make_keypoint_video(kernel, KeypointVideoSpec(frames=3, seed=4, keypoint_format="posetrack"))])
    cfg = SmplifyConfig(stage_iters=(3,), pose_prior_weights=(404.0,), shape_prior_weights=(100.0,),
                        bending_weights=(1280.7,), interpenetration_weights=(1e5,), camera_iters=3, warm_start=False)
    base = _fit(kernel, b, cfg, fmt="posetrack")
    moved = {**b, "keypoints": b["keypoints"].copy()}
    moved["keypoints"][:, 1:3, :2] += 150.0  # head_bottom, head_top far off
    np.testing.assert_array_equal(_fit(kernel, moved, cfg, fmt="posetrack").body_pose, base.body_pose)
    moved["keypoints"][:, 0, :2] += 150.0  # the nose is fitted
    assert np.abs(_fit(kernel, moved, cfg, fmt="posetrack").body_pose - base.body_pose).max() > 1e-3
