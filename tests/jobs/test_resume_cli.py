"""Resume through the CLI exactly as the README documents it: kill the driver, run the same command again.

One job (export, the quickest) is killed and resumed here: the resume logic is the runner's, shared by
every job. That every job's second run skips every committed shard is in test_job_contract.py."""

from __future__ import annotations

import json

import pytest
from cli_resume import dl3d_cmd, kill_then_resume
from job_cases import EXPORT

pytestmark = pytest.mark.slow

SHARDS = 6


def test_killed_run_resumes_without_recomputing_or_duplicating(job_assets, tmp_path):
    case = EXPORT
    src, out = tmp_path / "input", tmp_path / "out"
    rows = case.make_input(str(src), job_assets, SHARDS)
    cmd = dl3d_cmd(*case.cli, "--input", str(src), "--output", str(out), *case.cli_args(job_assets),
                   "--workers", "1", "--no-progress")
    before = kill_then_resume(cmd, out, SHARDS, rows, timeout=180)
    job = json.loads((out / "_job.json").read_text())
    assert job["counts"]["skipped"] >= len(before) and job["counts"]["committed"] == SHARDS - job["counts"]["skipped"]
    assert case.check_files(out) > 0
