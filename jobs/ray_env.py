"""Connecting to Ray: a cluster from ``--ray-address`` / ``RAY_ADDRESS``, else an embedded local Ray."""

from __future__ import annotations

import os

import ray

from dl3d.data.fs import s3_env



def ensure_ray(address: str | None = None) -> str:
    """Initialise Ray once per process and return a description of where it runs.

    With ``address`` (or ``RAY_ADDRESS``) the driver joins that cluster; otherwise it starts an
    embedded local Ray that needs no server, credentials or GPU.
    """
    if ray.is_initialized():
        return "existing Ray session"
    from dl3d.jobs.console import ray_init_kwargs

    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(address=address, **ray_init_kwargs(local=address is None))  # quiet unless --verbose
    if address is None:
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    return f"Ray cluster at {address}" if address else "embedded local Ray"


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def cluster_cpus() -> float:
    return float(ray.cluster_resources().get("CPU", 0.0))


def worker_runtime_env() -> dict | None:
    """Runtime environment for job actors: this process's S3 settings, so workers reach the same buckets."""
    env = s3_env()
    return {"env_vars": env} if env else None
