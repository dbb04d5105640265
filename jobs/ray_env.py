"""Connecting to Ray: a cluster from ``--ray-address`` / ``RAY_ADDRESS``, else an embedded local Ray."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import socket

import ray

from dl3d.data.fs import s3_env



def ensure_ray(address: str | None = None, *, num_cpus: int | None = None, state_api: bool = True) -> str:
    """Initialise Ray once per process and return a description of where it runs.

    With ``address`` (or ``RAY_ADDRESS``) the driver joins that cluster; otherwise it starts an
    embedded local Ray that needs no server, credentials or GPU. "Otherwise" means a new one:
    ``ray.init()`` with no address would join whatever cluster ``/tmp/ray/ray_current_cluster`` names
    (written by ``ray start`` and by ``ray.cluster_utils.Cluster``, and left behind when they die), so a
    job run without ``--ray-address`` on a machine where someone once ran ``ray start`` would land on that
    cluster, or hang on a dead one. ``address="local"`` always starts the embedded Ray.
    ``num_cpus``: logical CPUs of the embedded Ray (default: the machine's); ignored on a cluster.
    The embedded Ray starts lean (:data:`LEAN_HEAD_SKIPS`); ``state_api=False`` also leaves out the dashboard
    API server, which serves Ray's state API (the shard runner does not use it; Ray Train does).
    """
    if ray.is_initialized():
        return "existing Ray session"
    from dl3d.jobs.console import ray_init_kwargs

    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(address=address or "local", **ray_init_kwargs(local=address is None))  # quiet unless --verbose
    if address is not None:
        ray.init(**kwargs)
        return f"Ray cluster at {address}"
    kwargs["include_dashboard"] = False
    if num_cpus is not None:
        kwargs["num_cpus"] = int(num_cpus)
    skip = LEAN_HEAD_SKIPS + (() if kwargs["log_to_driver"] else ("start_log_monitor",)) \
        + (() if state_api else ("start_api_server",))
    with _lean_head(skip):
        ray.init(**kwargs)
    _EMBEDDED["quiet"] = not kwargs["log_to_driver"]
    return "embedded local Ray"


_EMBEDDED: dict[str, bool] = {}
"""Set when :func:`ensure_ray` started this process's embedded Ray: whether it is quiet (no worker output
relayed to the console)."""


def stop_embedded_ray() -> None:
    """Stop the embedded Ray that :func:`ensure_ray` started in this process, if it is quiet; otherwise nothing.

    Ray's own exit hook does the same but sleeps 0.5 s first so that worker output relayed to the console
    finishes printing; a quiet Ray relays none, so the CLI stops it itself when a command ends. A Ray this
    process joined or did not start (a cluster, a test's) is left alone, as is a ``--verbose`` one.
    """
    if _EMBEDDED.pop("quiet", False) and ray.is_initialized():
        ray.shutdown()


LEAN_HEAD_SKIPS = ("start_monitor",)
"""Head processes an embedded local Ray starts without: the autoscaler monitor (one machine, its resources
fixed: nothing to scale). Also left out: the log monitor unless output goes to the driver (``--verbose``;
quiet jobs leave worker output in the session's log files, where it stays either way), and, for
``state_api=False``, the dashboard API server (``include_dashboard=False`` still starts it, for Ray's state
and job-submission APIs; the shard runner calls neither, while Ray Train's placement-group cleaner asks
the state API whether its controller lives). Each is a Python process importing Ray on the same cores as
everything else, and takes up to half a second to stop at exit: on 2 cores the three cost a shard job about
2.5 s of its start and stop (README, throughput). A cluster (``--ray-address``) is joined as it is."""


@contextlib.contextmanager
def _lean_head(skip: tuple[str, ...]):
    """Within the block, a Ray head node that ``ray.init`` starts skips the ``skip`` methods of Ray's ``Node``
    and starts its raylet with the agents' ports already known (:func:`_agent_ports_known`).

    Ray's ``RayParams`` has ``no_monitor`` and ``include_log_monitor`` (what ``ray start`` sets) but
    ``ray.init`` passes neither, so the node's methods are swapped for the length of the call. This leans on
    ``ray._private.node.Node`` of the pinned Ray (2.60); where a method is missing (another Ray), that part
    is left as plain ``ray.init`` does it.
    """
    try:
        from ray._private.node import Node
    except ImportError:  # another Ray: start it in full
        yield
        return
    saved = {name: vars(Node)[name] for name in (*skip, "start_raylet") if name in vars(Node)}
    for name in saved:
        setattr(Node, name, _agent_ports_known(saved[name]) if name == "start_raylet" else _skipped)
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(Node, name, method)


def _skipped(self, *args, **kwargs) -> None:
    return None


def _agent_ports_known(start_raylet):
    """``Node.start_raylet`` that first settles the ports of the raylet's two agents, where Ray would have
    the raylet wait for them.

    A raylet registers its node only once it knows the ports of the dashboard agent and the runtime-env
    agent, which it reads from files the agents write when they are up: on 2 cores about 0.6 s of every
    ``ray.init``, spent importing Ray in two more processes. Where Ray's dashboard dependencies are missing
    (the pinned stack: no ``aiohttp_cors``), the dashboard agent runs ``--minimal``, serves nothing and writes
    -1 for its three ports; those files are written here first, with the same -1. The runtime-env agent is
    given a free port instead of choosing one (as ``ray start --runtime-env-agent-port`` does). The raylet
    then registers at once; the agents start beside it as before and the raylet still fate-shares them.
    With the dashboard's dependencies installed the agent's ports are its own, and nothing changes.
    """
    @functools.wraps(start_raylet)
    def start(self, *args, **kwargs):
        _settle_agent_ports(self)
        return start_raylet(self, *args, **kwargs)
    return start


def _settle_agent_ports(node) -> None:
    try:
        from ray._private.utils import get_dashboard_dependency_error
        from ray._raylet import (DASHBOARD_AGENT_LISTEN_PORT_NAME, METRICS_AGENT_PORT_NAME,
                                 METRICS_EXPORT_PORT_NAME, persist_port)
        params, session_dir, node_id = node._ray_params, node._session_dir, node._node_id
    except (ImportError, AttributeError):  # another Ray
        return
    if get_dashboard_dependency_error() is None or params.runtime_env_agent_port:
        return  # a full dashboard agent picks its own ports; a runtime-env port set by the caller
    params.runtime_env_agent_port = _free_port()
    for name in (METRICS_AGENT_PORT_NAME, METRICS_EXPORT_PORT_NAME, DASHBOARD_AGENT_LISTEN_PORT_NAME):
        persist_port(session_dir, node_id, name, -1)


def _free_port() -> int:
    """A port free now, drawn below the kernel's ephemeral range: every bind to port 0 (Ray's own servers
    and workers start that way, at the same moment) draws from that range, so none of them can take this
    port before the agent binds it. Port 0's pick where no such port is found."""
    low = 32768  # Linux's default start of the range; macOS starts at 49152
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    rng = random.Random()  # its own: a seeded global RNG would hand concurrent jobs the same port
    for _ in range(20 if low > 10000 else 0):
        port = rng.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


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
