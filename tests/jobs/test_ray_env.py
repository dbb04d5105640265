"""The embedded local Ray starts lean: which of Ray's head processes run, and that jobs still work on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytestmark = pytest.mark.slow

PROBE = textwrap.dedent("""
    import json, os, subprocess, sys
    import ray
    from ray._private.node import Node
    from dl3d.jobs.console import set_verbose
    from dl3d.jobs.ray_env import ensure_ray, stop_embedded_ray

    before = {name: vars(Node)[name] for name in ("start_monitor", "start_log_monitor", "start_api_server",
                                                  "start_raylet")}
    set_verbose(sys.argv[2] == "1")
    ensure_ray(num_cpus=1, state_api=sys.argv[1] == "1")
    restored = all(vars(Node)[name] is f for name, f in before.items())

    def descendants(pid):
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        return [k for c in kids for k in [c, *descendants(c)]]

    def cmdline(pid):
        try:
            return open(f"/proc/{pid}/cmdline").read().replace("\\0", " ")
        except OSError:
            return ""

    lines = [cmdline(p) for p in descendants(os.getpid())]
    running = {name: any(key in ln for ln in lines) for name, key in (
        ("gcs", "gcs_server"), ("raylet", "raylet/raylet"), ("monitor", "autoscaler/_private/monitor.py"),
        ("log_monitor", "log_monitor.py"), ("api_server", "dashboard/dashboard.py"))}
    square = ray.get(ray.remote(lambda x: x * x).remote(7))
    # A runtime environment goes through the runtime-env agent, on the port the raylet was given.
    env_var = ray.get(ray.remote(lambda: os.environ.get("DL3D_PROBE")).options(
        runtime_env={"env_vars": {"DL3D_PROBE": "set"}}).remote())
    info = ray.nodes()[0]
    ports = {k: info[k] for k in ("MetricsAgentPort", "MetricsExportPort", "DashboardAgentListenPort",
                                  "RuntimeEnvAgentPort")}
    raylet_has_port = any(f"--runtime_env_agent_port={ports['RuntimeEnvAgentPort']} " in ln for ln in lines)
    from ray._private.utils import get_dashboard_dependency_error
    minimal = get_dashboard_dependency_error() is not None
    node = ray._private.worker._global_node
    stop_embedded_ray()  # what the CLI calls when a command ends
    stopped = not ray.is_initialized()
    ray.shutdown()
    left = [p for p in node.all_processes.values() for info in p if info.process.poll() is None]
    print(json.dumps({"running": running, "square": square, "restored": restored, "stopped": stopped,
                      "left": len(left), "env_var": env_var, "ports": ports, "raylet_has_port": raylet_has_port,
                      "minimal": minimal}))
""")


def _probe(state_api: bool, verbose: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="dl3dr", dir="/tmp") as ray_tmp:  # short: socket paths fit 107 bytes
        env = os.environ | {"RAY_TMPDIR": ray_tmp}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run([sys.executable, "-c", PROBE, "1" if state_api else "0", "1" if verbose else "0"],
                              env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_embedded_ray_runs_without_the_monitors_and_for_shard_jobs_without_the_api_server():
    shard_job = _probe(state_api=False)
    assert shard_job["running"] == {"gcs": True, "raylet": True, "monitor": False, "log_monitor": False,
                                    "api_server": False}
    assert shard_job["square"] == 49, "tasks run on the lean head"
    assert shard_job["restored"], "Ray's Node starts every process again after the call"
    assert shard_job["stopped"], "a quiet embedded Ray is stopped when the command ends (no 0.5 s exit sleep)"
    assert shard_job["left"] == 0, "stopping it stops every process the head started"
    # The raylet was started with its agents' ports known, so it registered without waiting for them:
    # the runtime-env agent on a port given to both, and where the dashboard agent runs minimal (the
    # pinned stack), the -1 it would write itself for its three ports.
    assert shard_job["env_var"] == "set", "a task with a runtime environment runs (the agent is reachable)"
    assert shard_job["ports"]["RuntimeEnvAgentPort"] > 0
    if shard_job["minimal"]:
        assert shard_job["raylet_has_port"], "the raylet's command line names the runtime-env agent's port"
        assert [shard_job["ports"][k] for k in ("MetricsAgentPort", "MetricsExportPort",
                                                "DashboardAgentListenPort")] == [-1, -1, -1]
    # Training, --verbose: the state API for Ray Train's placement-group cleaner, the log monitor for the
    # worker output relayed to the console; Ray's exit hook stops this one, after the output is printed.
    training = _probe(state_api=True, verbose=True)
    assert training["running"] == {"gcs": True, "raylet": True, "monitor": False, "log_monitor": True,
                                   "api_server": True}
    assert training["square"] == 49 and not training["stopped"] and training["left"] == 0
    assert training["env_var"] == "set" and (training["raylet_has_port"] or not training["minimal"])
