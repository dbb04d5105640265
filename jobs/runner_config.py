"""The shard runner's options, free of Ray and torch so the CLI builds ``--help`` without importing either."""

from __future__ import annotations

from dataclasses import dataclass

from dl3d.config import opt


@dataclass
class RunnerConfig:
    """How a batch job runs on Ray."""

    workers: int = opt(0, "number of workers; 0 = one per GPU if the cluster has GPUs, else one per --num-cpus CPUs")
    num_gpus: float | None = opt(None, "GPUs per worker (default: 1 if the cluster has GPUs, else 0)")
    num_cpus: float = opt(1.0, "CPUs per worker; also its torch thread count")
    max_attempts: int = opt(3, "attempts per shard (worker errors and worker deaths) before it goes to _errors/")
    ray_address: str | None = opt(None, "Ray cluster to join (default: $RAY_ADDRESS, else an embedded local Ray)")
    progress: bool = opt(True, "show a progress bar on stderr")

    def __post_init__(self):
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.num_cpus <= 0:
            raise ValueError(f"num_cpus must be > 0, got {self.num_cpus}")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise ValueError(f"num_gpus must be >= 0, got {self.num_gpus}")
