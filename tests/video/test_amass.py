"""``dl3d smpl export --format amass-npz``: loading the NPZ and posing the body model gives the fit's
joints (moved into the stated z-up world) to 1e-5 m."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dl3d.body.amass import CAMERA_TO_WORLD, camera_to_world
from dl3d.data import Shard
from dl3d.workers.base import ShardTask


def _fit_like_table(arrays) -> pa.Table:
    """Camera-frame parameters of two synthetic walks (one with two tracks), rows shuffled, as ``smpl_fit`` columns."""
    from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video

    rows = []
    for video, track, seed in (("a", 0, 1), ("a", 1, 2), ("b", 0, 3)):
        v = make_keypoint_video(arrays, KeypointVideoSpec(frames=6, seed=seed))
        for f in range(6):
            rows.append({"id": f"{video}/{track}/{f:06d}", "video": video, "track": track, "frame": f,
                         "betas": v.betas.astype(np.float32).tolist(), "global_orient": v.global_orient[f].tolist(),
                         "body_pose": v.body_pose[f].tolist(), "transl": v.transl[f].tolist(),
                         "status": "ok" if f != 4 else "no_keypoints"})
    order = np.random.default_rng(0).permutation(len(rows))
    rows = [rows[i] for i in order]
    return pa.table({k: [r[k] for r in rows] for k in rows[0]}, schema=pa.schema([
        ("id", pa.string()), ("video", pa.string()), ("track", pa.int64()), ("frame", pa.int64()),
        ("betas", pa.list_(pa.float32())), ("global_orient", pa.list_(pa.float32(), 3)),
        ("body_pose", pa.list_(pa.float32(), 69)), ("transl", pa.list_(pa.float32(), 3)), ("status", pa.string())]))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, body_model_path):
    from dl3d.body import read_body_model_arrays
    from dl3d.workers.smpl_config import SmplExportConfig
    from dl3d.workers.smpl_export import SmplExportWorker

    root = tmp_path_factory.mktemp("amass")
    table = _fit_like_table(read_body_model_arrays(body_model_path))
    pq.write_table(table, root / "fit.parquet")
    worker = SmplExportWorker(SmplExportConfig(model=body_model_path, format="amass-npz", fps=25.0))
    result = worker.process(ShardTask(Shard(0, str(root / "fit.parquet")), str(root / "out")))
    assert result.status == "ok", result.error
    return root, table


def _joints(model, betas, go, bp, tr) -> np.ndarray:
    n = len(go)
    with torch.inference_mode():
        o = model(betas=torch.tensor(np.broadcast_to(betas, (n, len(betas))), dtype=torch.float32),
                  global_orient=torch.tensor(go, dtype=torch.float32), body_pose=torch.tensor(bp, dtype=torch.float32),
                  transl=torch.tensor(tr, dtype=torch.float32))
    return o.joints[:, :24].double().numpy()


def test_npz_round_trip_reproduces_the_fit_joints_in_the_world_frame(exported, body_model_path):
    from dl3d.body import load_body_model

    root, table = exported
    model = load_body_model(body_model_path)
    index = pq.read_table(root / "out" / "part-00000.parquet").to_pylist()
    assert [(r["id"], r["frames"], r["ok_frames"], r["status"]) for r in index] == [
        ("a/0", 6, 5, "ok"), ("a/1", 6, 5, "ok"), ("b/0", 6, 5, "ok")]
    rows = table.to_pylist()
    worst = 0.0
    for r in index:
        npz = np.load(root / "out" / r["npz_path"])
        assert npz["poses"].shape == (6, 72) and npz["trans"].shape == (6, 3) and npz["betas"].shape == (10,)
        assert float(npz["mocap_framerate"]) == 25.0 and str(npz["gender"]) == "neutral"
        assert npz["frames"].tolist() == list(range(6)) and npz["status"].tolist()[4] == "no_keypoints"
        np.testing.assert_array_equal(npz["camera_to_world"][:3, :3], CAMERA_TO_WORLD)
        mine = sorted((x for x in rows if x["video"] == r["video"] and x["track"] == r["track"]), key=lambda x: x["frame"])
        fit_cam = _joints(model, np.array(mine[0]["betas"]), np.array([x["global_orient"] for x in mine]),
                          np.array([x["body_pose"] for x in mine]), np.array([x["transl"] for x in mine]))
        posed = _joints(model, npz["betas"], npz["poses"][:, :3], npz["poses"][:, 3:], npz["trans"])
        err = np.abs(posed - fit_cam @ CAMERA_TO_WORLD.T).max()
        worst = max(worst, err)
    assert worst < 1e-5, f"round trip differs by {worst:.2e} m"


def test_world_is_z_up_and_the_rest_pelvis_matters(exported, body_model_path):
    from dl3d.body import load_body_model
    from dl3d.body.amass import rest_pelvis

    root, table = exported
    npz = np.load(root / "out" / "amass" / "part-00000" / "000.npz")
    model = load_body_model(body_model_path)
    joints = _joints(model, npz["betas"], npz["poses"][:, :3], npz["poses"][:, 3:], npz["trans"])
    head, pelvis = joints[:, 15], joints[:, 0]
    assert ((head - pelvis)[:, 2] > 0.3).all(), "the head is above the pelvis along world z"
    # translating without the rest pelvis (t_w = R t) would misplace the body by |R J0 - J0|: the procedural
    # body's pelvis rests near the origin (SMPL's does not), but still 100x above the round trip's 1e-5 m
    j0 = rest_pelvis(model, npz["betas"][None].astype(np.float32))[0]
    _, t_w = camera_to_world(np.zeros((1, 3)), np.zeros((1, 3)), j0)
    assert np.linalg.norm(t_w) > 1e-3, "the J0 term is not vacuous for this body"


def test_bad_options_are_named():
    from dl3d.body.amass import amass_npz
    from dl3d.workers.smpl_config import SmplExportConfig

    with pytest.raises(ValueError, match="fps must be > 0"):
        SmplExportConfig(model="m.pkl", format="amass-npz", fps=0)
    with pytest.raises(ValueError, match="expected gender in"):
        amass_npz(np.zeros((1, 3)), np.zeros((1, 69)), np.zeros((1, 3)), np.zeros(10), np.zeros(3), 30.0, "robot")
