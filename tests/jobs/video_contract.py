"""The shared job-contract checks, for the video jobs (used by test_pose_detect_job / test_smpl_render_job)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq


def dl3d(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "dl3d"), *args]


def markers(out: Path) -> list[Path]:
    return sorted((out / "_committed").glob("part-*.json")) if (out / "_committed").exists() else []


def check_dead_worker_and_failing_shard(report, out: Path) -> None:
    """As tests/jobs/test_job_contract.py: shard 0's worker killed once, shard 1 always raising."""
    assert report.exit_code == 1
    by_index = {s.index: s for s in report.shards}
    assert by_index[0].status == "ok" and by_index[0].attempts == 2, "the killed shard is retried on a live worker"
    assert by_index[2].status == "ok" and by_index[2].attempts == 1
    assert by_index[1].status == "failed" and by_index[1].attempts == 3
    err = json.loads((out / "_errors" / "part-00001.json").read_text())
    assert "poison shard 1 always fails" in err["error"] and err["attempts"] == 3
    assert [p.name for p in markers(out)] == ["part-00000.json", "part-00002.json"]


def kill_then_resume(cmd: list[str], out: Path, shards: int, rows: int) -> None:
    """Run ``cmd``, SIGKILL the driver after 2 committed shards, run it again: nothing recomputed, every row once."""
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    while len(markers(out)) < 2:
        if proc.poll() is not None:
            raise AssertionError("the job ended before it could be killed:\n" + proc.stdout.read().decode())
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("no shard committed within 240 s")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in markers(out)}
    assert 2 <= len(before) < shards, f"killed after {len(before)} of {shards} shards"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already committed" in done.stdout
    after = {p.name: p.read_bytes() for p in markers(out)}
    assert sorted(after) == [f"part-{i:05d}.json" for i in range(shards)]
    for name, content in before.items():
        assert after[name] == content, f"{name} was recomputed"
    ids = [i for p in sorted(out.glob("part-*.parquet")) for i in pq.read_table(p).column("id").to_pylist()]
    assert len(ids) == rows and len(set(ids)) == rows, "every row exactly once"
