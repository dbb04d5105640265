"""Resume through the CLI exactly as the README documents it: kill the driver, run the same command again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow


def _dl3d(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "dl3d"), *args]


def _markers(out: Path) -> list[Path]:
    return sorted((out / "_committed").glob("*.json")) if (out / "_committed").exists() else []


def test_killed_run_resumes_without_recomputing_or_duplicating(body_model_path, tmp_path):
    params, out = tmp_path / "params", tmp_path / "out"
    subprocess.run(_dl3d("data", "make", "smpl-params", "--out", str(params), "--videos", "10", "--frames", "30",
                         "--shards", "10"), check=True, capture_output=True)
    cmd = _dl3d("smpl", "export", "--input", str(params), "--output", str(out), "--model", body_model_path,
                "--meshes", "ply", "--workers", "1", "--no-progress")
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while len(_markers(out)) < 2:
        if proc.poll() is not None:
            pytest.fail("the job ended before it could be killed:\n" + proc.stdout.read().decode())
        if time.time() > deadline:
            pytest.fail("no shard committed within 180 s")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only; its embedded Ray is left to notice
    proc.wait()
    before = {p.name: p.read_bytes() for p in _markers(out)}
    assert 2 <= len(before) < 10, f"killed after {len(before)} of 10 shards"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already committed" in done.stdout
    after = {p.name: p.read_bytes() for p in _markers(out)}
    assert sorted(after) == [f"part-{i:05d}.json" for i in range(10)]
    for name, content in before.items():
        assert after[name] == content, f"{name} was recomputed"
    job = json.loads((out / "_job.json").read_text())
    assert job["counts"]["skipped"] >= len(before) and job["counts"]["committed"] == 10 - job["counts"]["skipped"]
    ids = [i for p in sorted(out.glob("part-*.parquet")) for i in pq.read_table(p).column("id").to_pylist()]
    assert len(ids) == 300 and len(set(ids)) == 300, "every row exactly once"
    assert len(list((out / "meshes").rglob("*.ply"))) == 300
