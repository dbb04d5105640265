"""Resume through the CLI exactly as the README documents it: kill the driver, run the same command again.

One job (export, the quickest) is killed and resumed here: the resume logic is the runner's, shared by
every job. That every job's second run skips every committed shard is in test_job_contract.py."""

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
from job_cases import EXPORT

pytestmark = pytest.mark.slow

SHARDS = 6


def _dl3d(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "dl3d"), *args]


def _markers(out: Path) -> list[Path]:
    return sorted((out / "_committed").glob("part-*.json")) if (out / "_committed").exists() else []


def test_killed_run_resumes_without_recomputing_or_duplicating(job_assets, tmp_path):
    case = EXPORT
    src, out = tmp_path / "input", tmp_path / "out"
    rows = case.make_input(str(src), job_assets, SHARDS)
    cmd = _dl3d(*case.cli, "--input", str(src), "--output", str(out), *case.cli_args(job_assets),
                "--workers", "1", "--no-progress")
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while len(_markers(out)) < 2:
        if proc.poll() is not None:
            pytest.fail("the job ended before it could be killed:\n" + proc.stdout.read().decode())
        if time.time() > deadline:
            proc.kill()
            pytest.fail("no shard committed within 180 s")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only; its embedded Ray is left to notice
    proc.wait()
    before = {p.name: p.read_bytes() for p in _markers(out)}
    assert 2 <= len(before) < SHARDS, f"killed after {len(before)} of {SHARDS} shards"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already committed" in done.stdout
    after = {p.name: p.read_bytes() for p in _markers(out)}
    assert sorted(after) == [f"part-{i:05d}.json" for i in range(SHARDS)]
    for name, content in before.items():
        assert after[name] == content, f"{name} was recomputed"
    job = json.loads((out / "_job.json").read_text())
    assert job["counts"]["skipped"] >= len(before) and job["counts"]["committed"] == SHARDS - job["counts"]["skipped"]
    ids = [i for p in sorted(out.glob("part-*.parquet")) for i in pq.read_table(p).column("id").to_pylist()]
    assert len(ids) == rows and len(set(ids)) == rows, "every row exactly once"
    assert case.check_files(out) > 0
