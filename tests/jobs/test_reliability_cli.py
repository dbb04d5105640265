"""Reliability through real driver processes (issue 8): no secret in Ray's session folder or the
output, a second live run refused, SIGTERM and SIGINT leave ``_job.json`` saying ``interrupted``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from job_cases import EXPORT, FIT

pytestmark = pytest.mark.slow

SENTINEL = "dl3d-sentinel-secret-7f3c9a1e"

_SECRET_JOB = """
import json, sys
import ray
from dl3d.jobs.runner import RunnerConfig, run_shards
from dl3d.workers.smpl_config import SmplExportConfig
from dl3d.workers.smpl_export import SmplExportWorker

report = run_shards("dl3d smpl export", SmplExportWorker, SmplExportConfig(model=sys.argv[1], meshes="ply"),
                    sys.argv[2], sys.argv[3], RunnerConfig(workers=2, progress=False))
print(report.summary())
print("SESSION=" + ray._private.worker._global_node.get_session_dir_path())
sys.exit(report.exit_code)
"""


def _dl3d(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "dl3d"), *args]


def _env(**extra: str) -> dict[str, str]:
    return os.environ | {"RAY_AUTH_MODE": "disabled", "TQDM_DISABLE": "1"} | extra


def test_s3_credentials_never_reach_ray_logs_or_the_output(s3_server, job_assets, tmp_path):
    import s3fs

    EXPORT.make_input(str(tmp_path / "in"), job_assets, 2)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    fs.put(str(tmp_path / "in"), "dl3d-test/secret-in", recursive=True)
    env = _env(AWS_SECRET_ACCESS_KEY=SENTINEL, AWS_SESSION_TOKEN=SENTINEL + "-token")
    done = subprocess.run([sys.executable, "-c", _SECRET_JOB, job_assets["body_model"], "s3://dl3d-test/secret-in",
                           "s3://dl3d-test/secret-out"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # the workers did reach S3, with the node's credentials
    session = Path(done.stdout.split("SESSION=")[1].strip())
    files = [p for p in session.rglob("*") if p.is_file()]
    assert len(files) > 10 and any("runtime_env" in p.name for p in files), "the session folder was searched"
    leaked = [str(p) for p in files if SENTINEL.encode() in p.read_bytes()]
    assert leaked == [], f"the secret is in {leaked}"
    fs.invalidate_cache()
    objects = fs.find("dl3d-test/secret-out")
    assert any(o.endswith("_job.json") for o in objects) and any(o.endswith(".ply") for o in objects)
    assert not [o for o in objects if SENTINEL.encode() in fs.cat_file(o)]
    assert SENTINEL not in done.stdout + done.stderr


def test_a_second_live_run_on_the_same_output_is_refused(job_assets, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    EXPORT.make_input(str(src), job_assets, 4)
    cmd = _dl3d(*EXPORT.cli, "--input", str(src), "--output", str(out), *EXPORT.cli_args(job_assets),
                "--workers", "1", "--no-progress")
    first = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (out / "_lease.json").exists():
        assert first.poll() is None and time.time() < deadline, "the first run took no lease"
        time.sleep(0.02)
    second = subprocess.run([*cmd, "--meshes", "none"], env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 2, second.stdout + second.stderr
    holder = json.loads((out / "_lease.json").read_text())
    assert f"is being written by another live run {holder['run_id']} (pid {first.pid} on" in second.stderr
    assert "Traceback" not in second.stderr
    stdout, _ = first.communicate(timeout=300)
    assert first.returncode == 0, stdout
    assert not (out / "_lease.json").exists()
    assert EXPORT.check_files(out) == 4 * 30, "every mesh from the first run, none mixed in"
    job = (out / "_job.json").read_bytes()
    other = subprocess.run([*cmd, "--meshes", "none"], env=_env(), capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "--meshes was 'ply', now 'none'" in other.stderr, other.stderr
    assert (out / "_job.json").read_bytes() == job, "a refused run does not rewrite _job.json"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_run_says_interrupted_and_exits_like_sigint(sig, job_assets, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    FIT.make_input(str(src), job_assets, 12)  # enough left to do when the first commit is seen (two in flight)
    cmd = _dl3d(*FIT.cli, "--input", str(src), "--output", str(out), *FIT.cli_args(job_assets), "--workers", "1",
                "--no-progress")
    # SIGINT at its default in the child: a pytest-xdist worker ignores SIGINT, an ignored signal survives
    # exec, and Python then installs no KeyboardInterrupt handler (as for `dl3d ... &` in a shell script).
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    while not (out / "_committed" / "part-00000.json").exists():
        assert proc.poll() is None and time.time() < deadline, "no shard committed"
        time.sleep(0.02)
    os.kill(proc.pid, sig)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output  # not 134 (abort with a C++ stack dump)
    assert "interrupted; re-run the same command to resume" in output
    assert "Stack trace" not in output and "SIGABRT" not in output
    job = json.loads((out / "_job.json").read_text())
    assert job["status"] == "interrupted"
    assert not (out / "_lease.json").exists()
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already committed" in again.stdout, again.stdout + again.stderr
