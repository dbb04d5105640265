"""Reliability of batch jobs on one module-scoped local Ray (issue 8): row statuses in _job.json, a
summary when _errors/ or _job.json cannot be written (a full disk as a patched writer), S3 gone mid-job."""

from __future__ import annotations

import errno
import json
import socket
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from job_cases import EXPORT, FIT

from dl3d.data import JobOutput
from dl3d.jobs.runner import RunnerConfig, run_shards

# s3_server (session scope) sets the AWS variables before this module's Ray starts: its workers
# inherit credentials from the node's environment, never through a runtime_env.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("s3_server")]


def _runner(**kw) -> RunnerConfig:
    return RunnerConfig(**({"workers": 2, "progress": False} | kw))


def test_row_statuses_reach_the_summary_and_job_json(local_ray, job_assets, tmp_path):
    src, out = tmp_path / "kp", tmp_path / "out"
    rows = FIT.make_input(str(src), job_assets, 2)
    part = src / "part-00000.parquet"
    table = pq.read_table(part)
    kp = np.array(table.column("keypoints").to_pylist(), dtype=np.float32)
    kp[2, :, :2] = np.nan  # a detector wrote NaN: that row is nan_keypoints, the others still fit
    kp[4, [2, 5, 9], :2] = 1e30  # corrupt numbers: missing keypoints, the row still fits
    pq.write_table(table.set_column(table.column_names.index("keypoints"), "keypoints",
                                    pa.array(kp.tolist(), table.schema.field("keypoints").type)), part)
    report = run_shards("fit", FIT.worker(), FIT.config(job_assets), str(src), str(out), _runner())
    assert report.exit_code == 0 and report.rows == rows
    assert report.row_status == {"nan_keypoints": 1, "ok": rows - 1}
    assert "    rows nan_keypoints         1\n" in report.summary()
    assert report.summary().endswith("status: ok (1 rows not ok: nan_keypoints 1; see their status column)")
    job = json.loads((out / "_job.json").read_text())
    assert job["status"] == "ok" and job["counts"]["row_status"] == {"nan_keypoints": 1, "ok": rows - 1}
    assert job["counts"]["rows_not_ok"] == 1
    fitted = pq.read_table(out / "part-00000.parquet")
    assert np.isfinite(np.array(fitted.column("joints").to_pylist(), dtype=np.float64)).all()


def test_a_summary_comes_out_when_errors_and_job_json_cannot_be_written(local_ray, job_assets, tmp_path,
                                                                        monkeypatch):
    from faulty_workers import poisoned

    src, out = tmp_path / "in", tmp_path / "out"
    EXPORT.make_input(str(src), job_assets, 3)
    full = OSError(errno.ENOSPC, "No space left on device")
    writes = {"job": 0}
    real_meta = JobOutput.write_job_meta

    def record_error(self, index, info):
        raise full

    def write_job_meta(self, meta):
        writes["job"] += 1
        if meta["status"] != "running":  # the disk fills up during the run
            raise full
        real_meta(self, meta)

    monkeypatch.setattr(JobOutput, "record_error", record_error)
    monkeypatch.setattr(JobOutput, "write_job_meta", write_job_meta)
    report = run_shards("export", poisoned(EXPORT.worker(), fail_shard=1), EXPORT.config(job_assets), str(src),
                        str(out), _runner(max_attempts=1))
    assert report.exit_code == 1
    text = report.summary()
    assert f"NOT RECORDED: {out}/_errors/part-00001.json: OSError: [Errno 28] No space left on device" in text
    assert f"NOT RECORDED: {out}/_job.json: OSError: [Errno 28] No space left on device" in text
    assert "FAILED part-00001 after 1 attempt(s): RuntimeError: poison shard 1 always fails" in text
    assert text.endswith("status: FAILED") and report.count("ok") == 2
    assert not (out / "_lease.json").exists(), "the lease is released whatever failed"


def test_s3_gone_mid_job_still_gives_a_summary(local_ray, job_assets, tmp_path, monkeypatch):
    """A moto server of its own, stopped once the first shard is committed: the other shards fail,
    nothing can be recorded, and the driver still prints its summary and exits 1."""
    import boto3
    import s3fs
    from faulty_workers import poisoned
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore: no retry loop on a closed port
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="gone")
    EXPORT.make_input(str(tmp_path / "in"), job_assets, 4)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    fs.put(str(tmp_path / "in"), "gone/in", recursive=True)

    def stop_after_first_commit():
        deadline = time.time() + 120
        while time.time() < deadline:
            fs.invalidate_cache()
            if fs.exists("gone/out/_committed/part-00000.json"):
                server.stop()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=stop_after_first_commit, daemon=True)
    watcher.start()
    started = time.time()
    report = run_shards("export", poisoned(EXPORT.worker(), slow_seconds=1.0), EXPORT.config(job_assets),
                        "s3://gone/in", "s3://gone/out", _runner(workers=1, max_attempts=1))
    watcher.join(timeout=1)
    assert report.exit_code == 1 and report.count("ok") >= 1 and len(report.failed) >= 1
    text = report.summary()
    assert "NOT RECORDED: s3://gone/out/_job.json" in text and "NOT RECORDED: s3://gone/out/_errors/" in text
    assert text.endswith("status: FAILED")
    assert time.time() - started < 240


def test_a_run_that_loses_its_lease_stops_starting_shards(local_ray, job_assets, tmp_path, monkeypatch):
    """Its lease taken by another run (it stalled past the expiry), a run starts no more shards, leaves
    that run's _job.json alone and exits 1 saying why."""
    from faulty_workers import poisoned

    import dl3d.jobs.runner as runner_mod
    from dl3d.jobs.job_guard import take_output

    src, out = tmp_path / "in", tmp_path / "out"
    EXPORT.make_input(str(src), job_assets, 6)
    monkeypatch.setattr(runner_mod, "take_output", lambda *a: take_output(*a, ttl_s=0.4))  # renewed every 0.1 s

    def steal():
        deadline = time.time() + 120
        while not (out / "_committed" / "part-00000.json").exists() and time.time() < deadline:
            time.sleep(0.02)
        rec = json.loads((out / "_lease.json").read_text()) | {"run_id": "other-run"}
        (out / "_lease.json").write_text(json.dumps(rec))

    thief = threading.Thread(target=steal, daemon=True)
    thief.start()
    report = run_shards("export", poisoned(EXPORT.worker(), slow_seconds=1.0), EXPORT.config(job_assets), str(src),
                        str(out), _runner(workers=1))
    thief.join(timeout=1)
    assert report.exit_code == 1 and report.aborted.startswith("another run took over the lease")
    assert 1 <= report.count("ok") < 6 and report.count("not_run") == 6 - report.count("ok")
    assert "ABORTED: another run took over the lease" in report.summary()
    assert json.loads((out / "_lease.json").read_text())["run_id"] == "other-run", "the new holder's lease stays"
    assert json.loads((out / "_job.json").read_text())["status"] == "running", "its _job.json is not ours to write"
