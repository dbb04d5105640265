"""The shard runner's options, free of Ray and torch so the CLI builds ``--help`` without importing either."""

from __future__ import annotations

from dataclasses import dataclass

from dl3d.config import opt
from dl3d.jobs.placement import Placement


@dataclass
class RunnerConfig(Placement):
    """How a batch job runs on Ray: its placement (``workers``, ``gpus_per_worker``, ``cpus_per_worker``,
    ``ray_address``), then attempts and progress."""

    max_attempts: int = opt(3, "attempts per shard (worker errors and worker deaths) before it goes to _errors/")
    progress: bool = opt(True, "show a progress bar on stderr")
    overwrite: bool = opt(False, "delete what an earlier run wrote to --output (another input or other options) "
                                 "and start over; without it such an output is refused and the same job resumes")

    def __post_init__(self):
        super().__post_init__()
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
