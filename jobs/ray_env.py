"""Connecting to Ray: a cluster from ``--ray-address`` / ``RAY_ADDRESS``, else an embedded local Ray."""

from __future__ import annotations

import os

import ray

from dl3d.data.fs import s3_env



def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> str:
    """Initialise Ray once per process and return a description of where it runs.

    With ``address`` (or ``RAY_ADDRESS``) the driver joins that cluster; otherwise it starts an
    embedded local Ray that needs no server, credentials or GPU. "Otherwise" means a new one:
    ``ray.init()`` with no address would join whatever cluster ``/tmp/ray/ray_current_cluster`` names
    (written by ``ray start`` and by ``ray.cluster_utils.Cluster``, and left behind when they die), so a
    job run without ``--ray-address`` on a machine where someone once ran ``ray start`` would land on that
    cluster, or hang on a dead one. ``address="local"`` always starts the embedded Ray.
    ``num_cpus``: logical CPUs of the embedded Ray (default: the machine's); ignored on a cluster.
    """
    if ray.is_initialized():
        return "existing Ray session"
    from dl3d.jobs.console import ray_init_kwargs

    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(address=address or "local", **ray_init_kwargs(local=address is None))  # quiet unless --verbose
    if address is None:
        kwargs["include_dashboard"] = False
        if num_cpus is not None:
            kwargs["num_cpus"] = int(num_cpus)
    ray.init(**kwargs)
    return f"Ray cluster at {address}" if address else "embedded local Ray"


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def cluster_cpus() -> float:
    return float(ray.cluster_resources().get("CPU", 0.0))


SECRET_ENV_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""Never put in a runtime environment: Ray's runtime-env agent logs ``env_vars`` in clear text
(``logs/runtime_env_agent.log`` of the session folder) and the dashboard shows them."""


def worker_runtime_env() -> dict | None:
    """Runtime environment for job actors: this process's non-secret S3 settings (endpoint, region,
    profile name), so workers reach the same buckets.

    Credentials are never forwarded this way (see ``SECRET_ENV_VARS``). Workers read them where
    botocore looks: their own environment, ``~/.aws``, an instance or pod role. On an embedded local
    Ray the workers inherit this process's environment (``ray.init`` starts the node from here);
    on a cluster, give the nodes their credentials (a Kubernetes Secret as env vars, IRSA, an
    instance profile; see cluster/README.md).
    """
    env = {k: v for k, v in s3_env().items() if k not in SECRET_ENV_VARS}
    return {"env_vars": env} if env else None
