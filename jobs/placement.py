"""Where a job's workers run on Ray: one placement config and one rule for the number of workers.

Batch jobs (``jobs/runner.py``) and training (``jobs/train.py``) both take :class:`Placement`'s
options (``--workers``, ``--gpus-per-worker``, ``--cpus-per-worker``, ``--ray-address``) and both ask
:func:`plan_workers` how many workers to start. Free of Ray and torch, so the CLI's help needs neither.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt


def _opt_with_alias(default, help: str, alias: str):
    """An option that also accepts its old spelling ``alias`` (hidden from --help; a warning says the new one)."""
    return dataclasses.field(default=default, metadata={"help": help, "deprecated_aliases": (alias,)})


@dataclass
class Placement:
    """Where the job's workers run: the Ray cluster, how many workers, each worker's GPU and CPU share."""

    workers: int = opt(0, "workers; 0 = auto: one per GPU when the cluster has GPUs, else for batch jobs one per "
                          "--cpus-per-worker CPUs (capped by the shards to do) and for training 1")
    gpus_per_worker: float | None = _opt_with_alias(
        None, "GPUs each worker asks Ray for (default: 1 if the cluster has GPUs, else 0); a worker uses cuda only "
              "when Ray assigned it a GPU", "--num-gpus")
    cpus_per_worker: float = _opt_with_alias(1.0, "CPUs each worker asks Ray for; also its torch thread count",
                                             "--num-cpus")
    ray_address: str | None = opt(None, "Ray cluster to join (default: $RAY_ADDRESS, else an embedded local Ray)")

    def __post_init__(self):
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")


@dataclass(frozen=True)
class WorkerPlan:
    """What :func:`plan_workers` decided."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: float


def plan_workers(placement: Placement, cluster_gpus: float, cluster_cpus: float, *,
                 cpu_auto: Literal["fill", "one"] = "fill", max_workers: int | None = None) -> WorkerPlan:
    """The number of workers and each one's resources.

    Args:
        placement: the job's options.
        cluster_gpus, cluster_cpus: the cluster's total GPU and CPU resources (``ray.cluster_resources()``).
        cpu_auto: with ``workers`` 0 on a cluster without GPUs: ``fill`` starts one worker per
            ``cpus_per_worker`` CPUs (batch jobs), ``one`` starts one (training, which needs CPUs left
            for Ray Data).
        max_workers: at most this many (a batch job's shards to do); 0 gives 0 workers.

    ``gpus_per_worker`` None means 1 when the cluster has GPUs, else 0. With GPUs, auto is one worker
    per ``gpus_per_worker`` GPUs. Every count is at least 1 unless ``max_workers`` is 0.
    """
    gpus = placement.gpus_per_worker if placement.gpus_per_worker is not None else (1.0 if cluster_gpus > 0 else 0.0)
    if placement.workers:
        n = placement.workers
    elif gpus > 0:
        n = max(1, int(cluster_gpus // gpus))
    elif cpu_auto == "fill":
        n = max(1, int(cluster_cpus // placement.cpus_per_worker))
    else:
        n = 1
    if max_workers is not None:
        n = min(n, max_workers)
    return WorkerPlan(workers=n, gpus_per_worker=gpus, cpus_per_worker=placement.cpus_per_worker)
