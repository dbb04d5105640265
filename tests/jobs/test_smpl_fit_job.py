"""``dl3d smpl fit`` as a job: accuracy on synthetic OpenPose videos, degenerate keypoints, missing camera."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dl3d.data import Shard
from dl3d.data.keypoint_tables import KEYPOINTS2D
from dl3d.workers.base import ShardTask
from dl3d.workers.smpl_fit import SmplFitConfig, SmplFitWorker


@pytest.mark.slow
def test_fit_job_accuracy_on_synthetic_openpose_videos(local_ray, body_model_path, tmp_path):
    """Synthetic videos (procedural body, 2 px noise, 10% dropped keypoints) -> OpenPose JSON -> ingest -> fit
    on two workers -> evaluate. The job's wiring (camera, ids, tracks, shards) is what is tested: the fast
    preset on 2 videos; SMPLify's own accuracy per preset is tests/fitting/test_smplify.py's."""
    from dl3d.body import read_body_model_arrays
    from dl3d.fitting.evaluation import evaluate_fit
    from dl3d.ingest import IngestConfig, ingest_openpose
    from dl3d.jobs.runner import RunnerConfig, run_shards
    from dl3d.synthetic.smpl_video_dataset import SmplVideoDatasetSpec, write_smpl_video_dataset

    spec = SmplVideoDatasetSpec(videos=2, frames=30, noise_px=2.0, drop_fraction=0.1, seed=11)
    write_smpl_video_dataset(str(tmp_path / "vid"), read_body_model_arrays(body_model_path), spec)
    ingest_openpose(str(tmp_path / "vid" / "openpose"), str(tmp_path / "kp"),
                    IngestConfig(videos_per_shard=1, image_width=1280, image_height=720, focal_length=1000.0))
    report = run_shards("fit", SmplFitWorker, SmplFitConfig(model=body_model_path, preset="fast"),
                        str(tmp_path / "kp"), str(tmp_path / "fit"), RunnerConfig(workers=2, progress=False))
    assert report.exit_code == 0 and report.rows == 60 and report.count("ok") == 2
    metrics = evaluate_fit(str(tmp_path / "fit"), str(tmp_path / "vid" / "truth"))
    assert metrics["rows_ok"] >= 55
    assert metrics["pa_mpjpe_mm"] <= 50.0, metrics  # 33 mm measured
    assert metrics["median_2d_error_px"] <= 3.5, metrics  # 2.9 px measured; 2 px noise alone gives about 2.8
    table = pq.read_table(tmp_path / "fit" / "part-00000.parquet")
    betas = np.array(table.column("betas").to_pylist())
    videos = np.array(table.column("video").to_pylist())
    for v in set(videos):
        assert np.ptp(betas[videos == v], axis=0).max() < 1e-6, "one shape per track"


def _keypoint_table(rows: list[tuple[str, int, np.ndarray]], width=1280, height=720, fmt="body25") -> pa.Table:
    columns = {
        "id": [f"{v}/0/{f:06d}" for v, f, _ in rows],
        "video": [v for v, _, _ in rows],
        "track": pa.array([0] * len(rows), pa.int64()),
        "frame": pa.array([f for _, f, _ in rows], pa.int64()),
        "keypoints": pa.array([k.tolist() for _, _, k in rows], pa.list_(pa.list_(pa.float32(), 3))),
        "keypoint_format": [fmt] * len(rows),
        "image_width": pa.array([width] * len(rows), pa.int64()),
        "image_height": pa.array([height] * len(rows), pa.int64()),
        "focal_length": pa.array([None] * len(rows), pa.float64()),
    }
    return pa.table(columns, schema=KEYPOINTS2D.arrow_schema(list(columns)))


def test_degenerate_keypoints_get_a_status_and_never_crash_the_shard(body_model_path, tmp_path):
    from dl3d.body import read_body_model_arrays
    from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video

    video = make_keypoint_video(read_body_model_arrays(body_model_path), KeypointVideoSpec(frames=12, seed=3, drop_fraction=0.0))
    kp = video.keypoints2d.astype(np.float32)
    rows = [("walk", f, kp[f]) for f in range(12)]
    rows[3] = ("walk", 3, np.where(np.arange(25)[:, None] == 4, np.nan, kp[3]))  # a NaN keypoint
    rows[5] = ("walk", 5, np.zeros((25, 3), np.float32))  # a frame with nobody
    rows.append(("single", 0, kp[0]))  # a video of one frame
    rows.append(("empty", 0, np.zeros((25, 3), np.float32)))  # nobody in the whole video
    src = tmp_path / "in" / "part-00000.parquet"
    src.parent.mkdir()
    pq.write_table(_keypoint_table(rows), src)
    worker = SmplFitWorker(SmplFitConfig(model=body_model_path, preset="fast", meshes="obj"))
    result = worker.process(ShardTask(Shard(0, str(src)), str(tmp_path / "out")))
    assert result.status == "ok" and result.rows == 14
    out = pq.read_table(tmp_path / "out" / "part-00000.parquet")
    status = dict(zip(out.column("id").to_pylist(), out.column("status").to_pylist()))
    assert status["walk/0/000003"] == "nan_keypoints"
    assert status["walk/0/000005"] == "no_keypoints"
    assert status["empty/0/000000"] == "no_keypoints"
    assert status["single/0/000000"] == "ok"
    assert sum(s == "ok" for s in status.values()) == 11
    for col in ("global_orient", "body_pose", "transl", "joints"):
        values = np.array(out.column(col).to_pylist(), dtype=np.float64)
        assert np.isfinite(values).all(), f"{col} must be finite for every row, fitted or not"
    err = np.array(out.column("reprojection_error_px").to_pylist(), dtype=np.float64)
    ok = np.array([s == "ok" for s in out.column("status").to_pylist()])
    assert np.nanmedian(err[ok]) < 6.0
    assert (tmp_path / "out" / "_committed" / "part-00000.json").exists()
    # Meshes for the fitted rows only, one OBJ each with the model's 6890 vertices.
    paths = dict(zip(out.column("id").to_pylist(), out.column("mesh_path").to_pylist()))
    assert {i for i, p in paths.items() if p is None} == {i for i, s in status.items() if s != "ok"}
    files = sorted((tmp_path / "out" / "meshes").rglob("*.obj"))
    assert len(files) == 11 and sorted(str(tmp_path / "out" / p) for p in paths.values() if p) == list(map(str, files))
    assert sum(ln.startswith("v ") for ln in files[0].read_text().splitlines()) == 6890


def test_shards_fused_into_one_fit_keep_their_tracks_apart(body_model_path, tmp_path, monkeypatch):
    """Three shards in one call (``process_batch``; the fit worker fuses shards): two hold a video of the same
    name and track but different people, one holds COCO-17 keypoints (fitted in a group of its own). Each
    shard's part holds its own rows, its own person's shape, and joints as accurate as the shard fitted alone."""
    from dl3d.body import read_body_model_arrays
    from dl3d.metrics import pa_mpjpe
    from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video

    arrays = read_body_model_arrays(body_model_path)
    formats = ("body25", "body25", "coco17")
    videos = [make_keypoint_video(arrays, KeypointVideoSpec(frames=20, seed=40 + i, keypoint_format=f))
              for i, f in enumerate(formats)]
    (tmp_path / "in").mkdir()
    tasks = {}
    for i, (video, fmt) in enumerate(zip(videos, formats)):
        src = tmp_path / "in" / f"part-{i:05d}.parquet"
        pq.write_table(_keypoint_table([("walk", f, video.keypoints2d[f].astype(np.float32)) for f in range(20)],
                                       fmt=fmt), src)
        tasks[i] = [ShardTask(Shard(i, str(src)), str(tmp_path / out)) for out in ("fused", "alone")]
    worker = SmplFitWorker(SmplFitConfig(model=body_model_path, preset="fast", focal_length=1000.0))
    fits = []
    fit = worker._fit
    monkeypatch.setattr(worker, "_fit", lambda data: fits.append(len(data["track_index"])) or fit(data))
    results = worker.process_batch([tasks[i][0] for i in range(3)])
    assert [r.status for r in results] == ["ok"] * 3 and fits == [40, 20], "one fit per keypoint format"
    assert all(worker.process(tasks[i][1]).status == "ok" for i in range(3)) and fits[2:] == [20, 20, 20]
    errors, betas = {}, {}
    for run in ("fused", "alone"):
        for i, video in enumerate(videos):
            table = pq.read_table(tmp_path / run / f"part-{i:05d}.parquet")
            assert table.column("frame").to_pylist() == list(range(20))
            assert set(table.column("status").to_pylist()) == {"ok"}
            joints = np.array(table.column("joints").to_pylist(), dtype=np.float64)
            errors[run, i] = float(np.mean(pa_mpjpe(joints, video.joints3d)) * 1000)
            betas[run, i] = np.array(table.column("betas").to_pylist())[0]
    for i in range(3):  # tracks do not interact in a fit: fused or alone, the same numbers (27-33 mm measured)
        assert errors["fused", i] < 45.0 and abs(errors["fused", i] - errors["alone", i]) < 0.5, errors
        assert np.abs(betas["fused", i] - betas["alone", i]).max() < 0.01, (betas["fused", i], betas["alone", i])
    assert np.abs(betas["fused", 0] - betas["fused", 1]).max() > 0.05, "two people, two shapes"


def test_missing_image_size_is_a_clear_input_error(body_model_path, tmp_path):
    kp = np.zeros((25, 3), np.float32)
    table = _keypoint_table([("v", 0, kp)]).set_column(6, "image_width", pa.array([None], pa.int64()))
    src = tmp_path / "part-00000.parquet"
    pq.write_table(table, src)
    worker = SmplFitWorker(SmplFitConfig(model=body_model_path, preset="fast"))
    result = worker.process(ShardTask(Shard(0, str(src)), str(tmp_path / "out")))
    assert result.status == "bad_input"
    assert "part-00000.parquet: row 0 (id 'v/0/000000') has no image size; pass --image-width/--image-height" in result.error


def test_the_drivers_checks_of_the_smpl_jobs_import_no_torch(body_model_path):
    """The driver runs ``preflight`` before Ray starts; torch (~1.7 s to import) is the workers' business."""
    import json
    import subprocess
    import sys

    code = f"""
import json, sys
from dl3d.workers.smpl_config import SmplExportConfig, SmplFitConfig
from dl3d.workers.smpl_export import SmplExportWorker
from dl3d.workers.smpl_fit import SmplFitWorker
SmplFitWorker.preflight(SmplFitConfig(model={body_model_path!r}))
SmplExportWorker.preflight(SmplExportConfig(model={body_model_path!r}))
print(json.dumps([m for m in ("torch", "smplx", "pytorch3d") if m in sys.modules]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
