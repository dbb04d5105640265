"""``dl3d train`` prints dl3d's lines only: Ray's internal chatter stays in Ray's session log files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RAY_CHATTER = (
    "Token authentication is enabled",                       # driver, every start of a local Ray
    "Failed to query Ray Train Controller actor state",      # placement-group cleaner, every 2 s
    "Execution plan of Dataset", "Starting execution of Dataset", "Progress bars disabled",  # Ray Data, every epoch
    "execution finished in",
    "Requesting resources", "Attempting to start training worker group", "Started training worker group",
    "Setting up process group", "Moving model to device", "Wrapping provided model",
    "Checkpoint successfully created", "Reporting training result",   # Ray Train, every checkpoint
    "core_worker.cc", "gcs_client.cc", "(raylet)", "(gcs_server)",   # C++ logs of Ray's processes
    "(TrainController", "(RayTrainWorker", "(SplitCoordinator", "(PlacementGroupCleaner", "pid=",
)
"""Substrings of lines Ray printed on the console of a 2-step ``dl3d train`` before dl3d quieted it."""

DL3D_LINE = re.compile(r"^(step \d+/\d+ \(epoch \d+\)  .*steps/s|run \S+|  steps \d+ -> \d+ on \d+ worker\(s\) in .* s|"
                       r"  last step: .*|  checkpoint \S+|  metrics \S+)$")


def test_training_prints_only_dl3d_lines(tmp_path):
    from dl3d.train.toy import make_toy_dataset

    make_toy_dataset(str(tmp_path / "data"), rows=48, shards=3, seed=5)
    ray_tmp = tempfile.mkdtemp(prefix="dl3dq", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # Ray's default auth, as a user has it
    env["RAY_TMPDIR"] = ray_tmp
    # A dead cluster's address left behind by `ray start` / ray.cluster_utils: without --ray-address the job
    # must start its own embedded Ray, not join (or hang on) the cluster that file names.
    os.makedirs(os.path.join(ray_tmp, "ray"))
    Path(ray_tmp, "ray", "ray_current_cluster").write_text("127.0.0.1:1\n")
    cmd = [str(Path(sys.executable).parent / "dl3d"), "train", "toy", "--data", str(tmp_path / "data"),
           "--storage", str(tmp_path / "runs"), "--steps", "2", "--batch-size", "8", "--workers", "1",
           "--log-every", "1", "--eval-every", "1", "--checkpoint-every", "2"]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        logs = "".join(p.read_text(errors="replace") for p in Path(ray_tmp).rglob("logs/**/*") if p.is_file())
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    console = done.stdout + done.stderr
    assert [c for c in RAY_CHATTER if c in console] == [], console
    assert done.stderr.strip() == "", f"nothing but genuine warnings on stderr, got:\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert [ln for ln in lines if not DL3D_LINE.match(ln)] == [], done.stdout
    assert any(ln.startswith("step 1/2 (epoch 0)  loss ") for ln in lines), "rank 0's step lines reach the console"
    assert any(ln.startswith("step 2/2 (epoch 0)  loss ") and "eval_loss" in ln for ln in lines)
    assert any(ln.startswith("  steps 0 -> 2 on 1 worker(s)") for ln in lines), "the summary is printed"
    assert any(ln.split() == ["checkpoint", str(tmp_path / "runs" / "toy" / "step-00000002")] for ln in lines), \
        "the summary names the last checkpoint"
    assert "Reporting training result" in logs, "Ray's own lines are kept in its session log files"
