"""Test-only workers with injected faults (imported by Ray workers through PYTHONPATH set in conftest)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from dl3d.config import opt
from dl3d.workers.smpl_export import SmplExportConfig, SmplExportWorker


@dataclass
class PoisonConfig(SmplExportConfig):
    die_shard: int = opt(-1, "shard whose first attempt kills the worker process (os._exit)")
    fail_shard: int = opt(-1, "shard that raises on every attempt")
    slow_seconds: float = opt(0.0, "sleep per shard, to make a run slow enough to interrupt")


class PoisonExportWorker(SmplExportWorker):
    config_cls = PoisonConfig

    def run_shard(self, task, out):
        if task.shard.index == self.config.die_shard and task.attempt == 1:
            os._exit(17)
        if task.shard.index == self.config.fail_shard:
            raise RuntimeError(f"poison shard {task.shard.index} always fails")
        time.sleep(self.config.slow_seconds)
        return super().run_shard(task, out)
