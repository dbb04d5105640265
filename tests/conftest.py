"""Shared fixtures: a generated body model, synthetic SMPL datasets, a moto S3 server, local Ray."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

# Before anything imports Ray: no auth token, no usage stats, quiet logs, tests/support importable by workers.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TQDM_DISABLE", "1")
SUPPORT = str(Path(__file__).parent / "support")
sys.path.insert(0, SUPPORT)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SUPPORT, os.environ.get("PYTHONPATH", "")) if p)


def pytest_collection_modifyitems(config, items):
    """Files holding slow tests run first (the order is otherwise kept): under ``make test``'s two
    pytest-xdist workers (``--dist loadfile``) the long files then start at once, not at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def body_model_path(tmp_path_factory) -> str:
    """A procedural body model (SMPL file format, NOT SMPL) written once per test session."""
    from dl3d.body import make_procedural_body_model, write_body_model

    return str(write_body_model(make_procedural_body_model(), tmp_path_factory.mktemp("body")))


@pytest.fixture(scope="session")
def job_assets(body_model_path, tmp_path_factory) -> dict[str, str]:
    """What the batch jobs load: the procedural body model and an untrained cpu-small SynSin checkpoint."""
    from render_inputs import write_untrained_checkpoint

    ckpt = write_untrained_checkpoint(str(tmp_path_factory.mktemp("synsin") / "synsin.pt"))
    return {"body_model": body_model_path, "synsin_checkpoint": ckpt}


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 (real HTTP, so s3fs and Ray workers reach it) with bucket ``dl3d-test``.

    Yields the endpoint URL; the AWS_* variables are set for this process (and so for the workers
    that the job runner starts, through their runtime environment).
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL_S3=endpoint,
                      AWS_DEFAULT_REGION="us-east-1")
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="dl3d-test")
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_SHARED_RAY: dict[str, object] = {}
"""The gcs address of the Ray this session started for ``local_ray`` (empty until first use)."""


@pytest.fixture
def local_ray(s3_server):
    """One embedded local Ray shared by every test of the session that asks for it (each Ray start costs
    seconds): 4 logical CPUs, so two 1-CPU workers leave two for Ray Data (ray#44687). Started after the
    moto server so every Ray process inherits its endpoint and credentials. A test that needs another
    cluster (fake GPUs, two nodes) asks for ``own_ray`` instead; the next ``local_ray`` user starts the
    shared one again. A Ray left behind by something else (an in-process CLI run) is replaced."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().gcs_address != _SHARED_RAY.get("gcs"):
        ray.shutdown()
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False)  # never join a cluster another test made
        _SHARED_RAY["gcs"] = ray.get_runtime_context().gcs_address
    yield


@pytest.fixture
def own_ray():
    """No Ray running when the test starts (the shared one is shut down), and none left when it ends."""
    import ray

    ray.shutdown()
    yield
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_the_end():
    yield
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
