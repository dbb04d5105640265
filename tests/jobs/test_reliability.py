"""Reliability of batch jobs without Ray (issue 8): outlier keypoints, row statuses, resuming only the
same job, the output lease, the input's declared counts and ids, leftovers, unusable outputs, bad numbers.

The tests that need Ray or the CLI are in test_reliability_ray.py and test_reliability_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dl3d.data import DataError, JobOutput, Shard, list_shards
from dl3d.data.keypoint_range import drop_far_keypoints, far_outside
from dl3d.data.keypoint_tables import KEYPOINTS2D
from dl3d.jobs.job_guard import OutputMismatch, OutputUnusable, check_input, job_spec, take_output
from dl3d.jobs.lease import Lease, LeaseHeld
from dl3d.jobs.runner import JobReport, ShardOutcome
from dl3d.workers.base import ShardTask
from dl3d.workers.smpl_config import SmplFitConfig, SmplExportConfig
from dl3d.workers.smpl_fit import SmplFitWorker


# -- 1. outlier keypoints ------------------------------------------------------------------------

def test_far_outside_is_one_image_size_beyond_the_border():
    xy = np.array([[[-1280.5, 10], [-1279.5, 10], [2559.5, 10], [2560.5, 10], [5, -721], [5, 1439]]], np.float32)
    assert far_outside(xy, 1280, 720).tolist() == [[True, False, False, True, True, False]]
    assert far_outside(np.array([[[1e6 + 1, 0], [-9e5, 0]]])).tolist() == [[True, False]]  # size unknown
    kp = np.concatenate([xy, np.ones((1, 6, 1), np.float32)], -1)
    out, n = drop_far_keypoints(kp, 1280, 720)
    assert n == 3 and (out[0, [0, 3, 4]] == 0).all() and (out[0, [1, 2, 5]] == kp[0, [1, 2, 5]]).all()


@pytest.fixture(scope="module")
def video(body_model_path):
    from dl3d.body import read_body_model_arrays
    from dl3d.body.joints_kernel import build_points_kernel
    from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, stack_videos

    kernel = build_points_kernel(read_body_model_arrays(body_model_path))
    return kernel, stack_videos([make_keypoint_video(kernel, KeypointVideoSpec(frames=20, seed=3))])


def test_outlier_keypoints_do_not_poison_their_track(video):
    """Three keypoints at 1e30 px in one frame (one corrupted OpenPose file) used to turn the whole
    track into nonfinite_fit with NaN joints; now they are missing and the track fits as without them."""
    from dataclasses import replace

    from dl3d.fitting import SMPLIFY_PRESETS, fit_smplify
    from dl3d.metrics import pa_mpjpe

    kernel, b = video
    cfg = replace(SMPLIFY_PRESETS["fast"], stage_iters=(8, 8, 10, 15), refine_iters=10, camera_iters=15)

    def fit(kp, **kw):
        return fit_smplify(kernel, kp, "body25", b["track_index"], b["frame"], b["focal"], b["principal_point"],
                           cfg, **kw)

    clean = fit(b["keypoints"])
    kp = b["keypoints"].copy()
    kp[10, [2, 5, 9], :2] = 1e30
    r = fit(kp)
    assert r.stats["offscreen_keypoints"] == 3
    assert Counter(r.status.tolist()) == {"ok": 20}
    assert np.isfinite(r.joints3d).all() and np.isfinite(r.transl).all()
    err, err_clean = pa_mpjpe(r.joints3d, b["joints3d"]) * 1000, pa_mpjpe(clean.joints3d, b["joints3d"]) * 1000
    assert err.mean() < err_clean.mean() + 5.0 and err.mean() < 50.0, (err.mean(), err_clean.mean())

    # Without the range check (an image said to be 1e32 px wide) the objective itself stays finite:
    # residuals are clamped before squaring and the bad row's NaN gradients are dropped.
    robust = fit(kp, image_size=[1e32, 1e32])
    assert robust.stats["offscreen_keypoints"] == 0
    for name in ("betas", "global_orient", "body_pose", "transl", "joints3d", "loss"):
        assert np.isfinite(getattr(robust, name)).all(), name
    assert (robust.status == "ok").all()


def test_ingest_drops_keypoints_far_outside_the_image():
    from dl3d.ingest.writer import VideoKeypoints

    kp = np.full((3, 25, 3), 50.0, np.float32)
    kp[1, 4, :2] = 1e30
    kp[2, 3, 0] = -1281.0  # just over one image width left of the image
    kp[2, 6, 0] = -1279.0  # just under: kept
    v = VideoKeypoints("v", [0, 1, 2], [0, 0, 0], kp, "body25", image_size=(1280, 720))
    assert v.offscreen_keypoints == 2
    assert (v.keypoints[1, 4] == 0).all() and (v.keypoints[2, 3] == 0).all() and v.keypoints[2, 6, 0] == -1279.0


def _keypoint_table(rows, width=1280, height=720, focal=None) -> pa.Table:
    n = len(rows)
    columns = {
        "id": [f"{v}/0/{f:06d}" for v, f, _ in rows], "video": [v for v, _, _ in rows], "track": [0] * n,
        "frame": [f for _, f, _ in rows],
        "keypoints": pa.array([k.tolist() for _, _, k in rows], KEYPOINTS2D.by_name["keypoints"].type),
        "keypoint_format": ["body25"] * n,
        "image_width": pa.array(width if isinstance(width, list) else [width] * n, pa.int64()),
        "image_height": pa.array([height] * n, pa.int64()),
        "focal_length": pa.array(focal if isinstance(focal, list) else [focal] * n, pa.float64()),
    }
    return pa.table(columns, schema=KEYPOINTS2D.arrow_schema(list(columns)))


@pytest.fixture(scope="module")
def fit_worker(body_model_path):
    return SmplFitWorker(SmplFitConfig(model=body_model_path, preset="fast"))


def test_row_statuses_are_counted_in_the_result_and_the_marker(fit_worker, video, tmp_path):
    _, b = video
    kp = b["keypoints"][:12].astype(np.float32).copy()  # the fixture's video has 20 frames
    kp[3, 4, 0] = np.nan
    kp[5] = 0.0
    src = tmp_path / "in" / "part-00000.parquet"
    src.parent.mkdir()
    pq.write_table(_keypoint_table([("walk", f, kp[f]) for f in range(12)]), src)
    result = fit_worker.process(ShardTask(Shard(0, str(src)), str(tmp_path / "out")))
    assert result.status == "ok"
    assert result.row_status == {"nan_keypoints": 1, "no_keypoints": 1, "ok": 10}
    marker = json.loads((tmp_path / "out" / "_committed" / "part-00000.json").read_text())
    assert marker["row_status"] == result.row_status


def test_summary_counts_every_row_status():
    shards = [ShardOutcome(0, "ok", 100, row_status={"ok": 97, "nonfinite_fit": 3}),
              ShardOutcome(1, "ok", 50, row_status={"ok": 49, "no_keypoints": 1}), ShardOutcome(2, "skipped")]
    report = JobReport("fit", "/out", shards, 2.0)
    assert report.row_status == {"no_keypoints": 1, "nonfinite_fit": 3, "ok": 146}
    text = report.summary()
    assert "    rows nonfinite_fit         3\n" in text and "    rows no_keypoints          1\n" in text
    assert text.splitlines()[-1] == "status: ok (4 rows not ok: no_keypoints 1, nonfinite_fit 3; see their status column)"
    assert report.exit_code == 0
    report.unrecorded.append("/out/_job.json: OSError: [Errno 28] No space left on device")
    assert report.exit_code == 1 and "NOT RECORDED: /out/_job.json" in report.summary()


# -- 10. bad numbers are input errors ------------------------------------------------------------

@pytest.mark.parametrize("column,width,focal,expected", [
    ("focal_length", 1280, [800.0, -1000.0, 800.0], "column 'focal_length': row 1 (id 'v/0/000001') holds -1000.0"),
    ("image_width", [1280, 1280, 0], None, "column 'image_width': row 2 (id 'v/0/000002') holds 0"),
])
def test_bad_camera_numbers_are_input_errors_naming_file_column_row(fit_worker, tmp_path, column, width, focal,
                                                                    expected):
    src = tmp_path / "part-00000.parquet"
    pq.write_table(_keypoint_table([("v", f, np.full((25, 3), 100.0)) for f in range(3)], width=width, focal=focal),
                   src)
    result = fit_worker.process(ShardTask(Shard(0, str(src)), str(tmp_path / "out")))
    assert result.status == "bad_input"  # not retried: the runner records bad_input after one attempt
    assert str(src) in result.error and expected in result.error
    with pytest.raises(ValueError, match="image_width must be >= 1 pixel, got 0"):
        SmplFitConfig(model="m.pkl", image_width=0)


# -- 2. resume only the same job -----------------------------------------------------------------

@pytest.fixture
def params_input(tmp_path) -> str:
    from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset

    url = str(tmp_path / "params")
    write_smpl_params_dataset(url, SmplParamsSpec(videos=3, frames=4, shards=3, seed=1))
    return url


def _take(out: JobOutput, spec: dict, overwrite: bool = False):
    lease, notes = take_output(out, spec, "run-" + os.urandom(3).hex(), overwrite)
    lease.release()
    return notes


def test_a_rerun_with_another_input_or_options_is_refused_naming_the_difference(params_input, tmp_path):
    out = JobOutput(str(tmp_path / "out"))
    spec = job_spec("dl3d smpl export", SmplExportConfig(model="/m/smpl.pkl", meshes="ply"), params_input)
    _take(out, spec)
    out.write_part(0, pa.table({"id": ["a"]}))
    out.commit(0, {"rows": 1})
    assert _take(out, spec) == []  # the same job resumes
    other_options = job_spec("dl3d smpl export", SmplExportConfig(model="/m/smpl.pkl", meshes="none"), params_input)
    with pytest.raises(OutputMismatch, match=r"--meshes was 'ply', now 'none'.*--overwrite"):
        _take(out, other_options)
    other = tmp_path / "other"
    from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset

    write_smpl_params_dataset(str(other), SmplParamsSpec(videos=2, frames=4, shards=2, seed=2))
    with pytest.raises(OutputMismatch, match=f"its input was {params_input}, this run's is {other}"):
        _take(out, job_spec("dl3d smpl export", SmplExportConfig(model="/m/smpl.pkl", meshes="ply"), str(other)))
    # The same URL with other contents is another input too.
    write_smpl_params_dataset(params_input, SmplParamsSpec(videos=3, frames=5, shards=3, seed=1))
    with pytest.raises(OutputMismatch, match="has changed since"):
        _take(out, job_spec("dl3d smpl export", SmplExportConfig(model="/m/smpl.pkl", meshes="ply"), params_input))
    assert out.committed() == {0}, "a refused run changes nothing"
    notes = _take(out, other_options, overwrite=True)
    assert out.committed() == set() and not (tmp_path / "out" / "part-00000.parquet").exists()
    assert notes == ["--overwrite: removed 3 files of an earlier run"]  # part, marker, spec
    assert out.read_spec() == other_options


def test_markers_without_a_spec_are_not_resumed(params_input, tmp_path):
    out = JobOutput(str(tmp_path / "out"))
    out.commit(0, {"rows": 1})
    spec = job_spec("dl3d smpl export", SmplExportConfig(model="m.pkl"), params_input)
    with pytest.raises(OutputMismatch, match="holds 1 committed shards but no _committed/_spec.json"):
        _take(out, spec)


# -- 3. one live run per output ------------------------------------------------------------------

def test_a_second_live_run_is_refused_and_a_stale_lease_is_taken_over(tmp_path):
    out = JobOutput(str(tmp_path / "out"))
    first = Lease(out, "run-a", "job", ttl_s=30).acquire()
    with pytest.raises(LeaseHeld, match=r"being written by another live run run-a \(pid \d+"):
        Lease(out, "run-b", "job").acquire()
    first.release()
    assert not (tmp_path / "out" / "_lease.json").exists()
    second = Lease(out, "run-b", "job").acquire()
    second.release()

    # Expired: its run stopped renewing it.
    rec = Lease(out, "run-c", "job").record() | {"pid": 1, "host": "elsewhere", "expires": time.time() - 5}
    (tmp_path / "out" / "_lease.json").write_text(json.dumps(rec))
    third = Lease(out, "run-d", "job").acquire()
    assert "took over the lease of run run-c: it expired" in third.took_over
    third.release()

    # Not expired, but its process on this host is gone (a driver killed with SIGKILL).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rec = Lease(out, "run-e", "job").record() | {"pid": dead.pid, "pid_start": None}
    (tmp_path / "out" / "_lease.json").write_text(json.dumps(rec))
    fourth = Lease(out, "run-f", "job").acquire()
    assert f"its process {dead.pid} on this host is gone" in fourth.took_over
    fourth.release()


def test_the_heartbeat_renews_and_notices_a_lost_lease(tmp_path):
    out = JobOutput(str(tmp_path / "out"))
    lease = Lease(out, "run-a", "job", ttl_s=0.4).acquire()
    first = json.loads((tmp_path / "out" / "_lease.json").read_text())["expires"]
    deadline = time.time() + 10  # the heartbeat runs every ttl/4 = 0.1 s; a loaded machine may delay it
    while json.loads((tmp_path / "out" / "_lease.json").read_text())["expires"] <= first:
        assert time.time() < deadline, "the heartbeat never renewed the lease"
        time.sleep(0.05)
    rec = lease.record() | {"run_id": "thief"}
    (tmp_path / "out" / "_lease.json").write_text(json.dumps(rec))
    assert lease.lost.wait(10.0)
    lease.release()
    assert json.loads((tmp_path / "out" / "_lease.json").read_text())["run_id"] == "thief"


def test_lease_on_s3_uses_conditional_writes(s3_server):
    out = JobOutput(f"s3://dl3d-test/lease-{os.urandom(3).hex()}")
    first = Lease(out, "run-a", "job").acquire()
    with pytest.raises(LeaseHeld, match="run-a"):
        Lease(out, "run-b", "job").acquire()
    first.release()
    stale = Lease(out, "run-c", "job").record() | {"host": "elsewhere", "expires": time.time() - 1}
    out.fs.pipe_file(out.path("_lease.json"), json.dumps(stale).encode())
    taker = Lease(out, "run-d", "job")
    taker.acquire()
    assert "expired" in taker.took_over
    # A conditional write against a changed object fails: two takers cannot both win.
    etag = out.fs.info(out.path("_lease.json"))["ETag"]
    out.fs.pipe_file(out.path("_lease.json"), b"{}")
    with pytest.raises(OSError):
        out.fs.pipe_file(out.path("_lease.json"), b"{}", IfMatch=etag)
    with pytest.raises(FileExistsError):
        out.fs.pipe_file(out.path("_lease.json"), b"{}", mode="create")
    taker.release()


# -- 4, 5. the input's declared counts and ids ---------------------------------------------------

def test_missing_shards_and_rows_against_dataset_json(params_input):
    shards = list_shards(params_input)
    assert check_input(params_input, shards)["rows"] == 12
    paths = [s.url.removeprefix("file://") for s in shards]
    os.remove(paths[1])
    with pytest.raises(DataError, match=r"_dataset.json: declares 3 shards, found 2; missing part-00001.parquet"):
        check_input(params_input, list_shards(params_input))
    pq.write_table(pq.read_table(paths[2]).slice(0, 2), paths[1])  # a shard back, but short
    with pytest.raises(DataError, match=r"declares 12 rows, the shards hold 10"):
        check_input(params_input, list_shards(params_input))


def test_duplicate_ids_are_refused_naming_both_rows(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    pq.write_table(pa.table({"id": ["a", "b", "c"]}), d / "x.parquet")
    pq.write_table(pa.table({"id": ["d", "b"]}), d / "y.parquet")
    with pytest.raises(DataError, match=r"y.parquet: column 'id': row 1 repeats id 'b' of part-00000 row 1"):
        check_input(str(d), list_shards(str(d)))
    pq.write_table(pa.table({"id": ["d", "d"]}), d / "y.parquet")
    with pytest.raises(DataError, match=r"row 1 repeats id 'd' of part-00001 row 0"):
        check_input(str(d), list_shards(str(d)))


# -- 8. leftovers of interrupted writes ------------------------------------------------------------

def test_a_shard_clears_its_own_partial_files_and_inspect_ignores_them(tmp_path):
    from dl3d.data.inspect import describe

    root = tmp_path / "out"
    out = JobOutput(str(root))
    out.write_part(0, pa.table({"id": ["a"]}))
    out.write_part(1, pa.table({"id": ["b"]}))
    (root / "meshes" / "part-00000").mkdir(parents=True)
    (root / "meshes" / "part-00001").mkdir(parents=True)
    leftovers = [root / ".part-00000.parquet.1234.tmp", root / "meshes" / "part-00000" / ".000003.ply.99.tmp",
                 root / "_committed" / ".part-00000.json.5.tmp"]
    others = [root / ".part-00001.parquet.77.tmp", root / "meshes" / "part-00001" / ".000000.ply.1.tmp"]
    (root / "_committed").mkdir()
    for p in leftovers + others:
        p.write_bytes(b"half")
    import torch

    from dl3d.mesh import encode_mesh

    tri = encode_mesh(torch.eye(3), torch.tensor([[0, 1, 2]]), "ply")
    (root / "meshes" / "part-00001" / "000000.ply").write_bytes(tri)
    assert "mesh files: 1\nfirst mesh:" in describe(str(root))  # the partial .tmp files are not meshes
    removed = out.clear_leftovers(0)
    assert sorted(removed) == sorted(str(p) for p in leftovers)
    assert all(p.exists() for p in others), "another shard's files are not touched"


# -- 9. unusable outputs: a sentence and exit 2 before Ray starts --------------------------------

def test_unusable_outputs_are_refused_before_ray_starts(own_ray, params_input, body_model_path, tmp_path, capsys,
                                                        monkeypatch):
    import ray

    from dl3d.jobs.cli import main

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    base = ["smpl", "export", "--input", params_input, "--model", body_model_path, "--no-progress"]
    assert main([*base, "--output", str(a_file)]) == 2
    assert f"dl3d: error: cannot use the output {a_file}: it is a file" in capsys.readouterr().err
    with pytest.raises(OutputUnusable, match="it is a file"):
        take_output(JobOutput(str(a_file)), job_spec("j", SmplExportConfig(model="m.pkl"), params_input), "r", False)
    assert main([*base, "--output", str(a_file / "sub")]) == 2
    assert "a file stands where a folder is needed" in capsys.readouterr().err

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro"))

    monkeypatch.setattr("dl3d.jobs.lease.fsx.put_bytes", denied)  # a read-only or forbidden place, even as root
    assert main([*base, "--output", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dl3d: error: cannot write to the output {tmp_path / 'ro'}: permission denied "
                          "(read-only or forbidden)")
    assert "Traceback" not in err
    assert not ray.is_initialized()
