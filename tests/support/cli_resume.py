"""Kill a ``dl3d`` batch job's driver mid-run and run the same command again: the check the README's
"re-running resumes" promise needs, for any job (one job in the suite is enough: resume is the runner's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq


def dl3d_cmd(*args: str) -> list[str]:
    """The installed ``dl3d`` command with ``args``."""
    return [str(Path(sys.executable).parent / "dl3d"), *args]


def markers(out: Path) -> list[Path]:
    """The commit markers of an output folder, sorted."""
    return sorted((out / "_committed").glob("part-*.json")) if (out / "_committed").exists() else []


def kill_then_resume(cmd: list[str], out: Path, shards: int, rows: int, timeout: float = 240.0) -> dict[str, bytes]:
    """Run ``cmd``, SIGKILL the driver once 2 shards are committed, run it again; check nothing committed
    was recomputed and every input row is in the output once. Returns the markers committed before the kill."""
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while len(markers(out)) < 2:
        if proc.poll() is not None:
            raise AssertionError("the job ended before it could be killed:\n" + proc.stdout.read().decode())
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"no shard committed within {timeout:.0f} s")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only; its embedded Ray is left to notice
    proc.wait()
    before = {p.name: p.read_bytes() for p in markers(out)}
    assert 2 <= len(before) < shards, f"killed after {len(before)} of {shards} shards"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2 * timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already committed" in done.stdout
    after = {p.name: p.read_bytes() for p in markers(out)}
    assert sorted(after) == [f"part-{i:05d}.json" for i in range(shards)]
    for name, content in before.items():
        assert after[name] == content, f"{name} was recomputed"
    ids = [i for p in sorted(out.glob("part-*.parquet")) for i in pq.read_table(p).column("id").to_pylist()]
    assert len(ids) == rows and len(set(ids)) == rows, "every row exactly once"
    return before
