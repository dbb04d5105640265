"""Checks of the shared batch-job contract that every job's tests make (test_job_contract.py runs them on
the jobs of job_cases.py; the video, GIRAFFE and Mesh R-CNN job tests on theirs)."""

from __future__ import annotations

import json
from pathlib import Path


def check_dead_worker_and_failing_shard(report, out: Path) -> None:
    """A run of ``faulty_workers.poisoned(worker, die_shard=0, fail_shard=1)`` over 3 shards with
    ``max_attempts=3``: shard 0's worker died once and its shard was retried on a live worker, shard 1
    failed every attempt and is recorded under ``_errors/``, shard 2 went through."""
    assert report.exit_code == 1
    by_index = {s.index: s for s in report.shards}
    assert by_index[0].status == "ok" and by_index[0].attempts == 2, "the killed shard is retried on a live worker"
    assert by_index[2].status == "ok" and by_index[2].attempts == 1
    assert by_index[1].status == "failed" and by_index[1].attempts == 3
    err = json.loads((out / "_errors" / "part-00001.json").read_text())
    assert "poison shard 1 always fails" in err["error"] and err["attempts"] == 3
    assert sorted(p.name for p in (out / "_committed").glob("part-*.json")) == ["part-00000.json", "part-00002.json"]
    assert json.loads((out / "_committed" / "part-00000.json").read_text())["attempt"] == 2
    summary = report.summary()
    assert "FAILED part-00001 after 3 attempt(s)" in summary and "poison shard 1 always fails" in summary


def check_second_run_skips_everything(report, shards: int) -> None:
    """The same job run again over a complete output: every shard skipped, nothing recomputed."""
    assert report.exit_code == 0 and report.count("skipped") == shards and report.count("ok") == 0 and report.rows == 0
