"""Test-only fault injection for any shard worker (imported by Ray workers through PYTHONPATH, see conftest)."""

from __future__ import annotations

import os
import time


class PoisonMixin:
    """Kills the worker process on the first attempt of ``die_shard``; raises on every attempt of ``fail_shard``."""

    die_shard: int = -1
    fail_shard: int = -1
    slow_seconds: float = 0.0

    def run_shard(self, task, out):
        if task.shard.index == self.die_shard and task.attempt == 1:
            os._exit(17)
        if task.shard.index == self.fail_shard:
            raise RuntimeError(f"poison shard {task.shard.index} always fails")
        time.sleep(self.slow_seconds)
        return super().run_shard(task, out)


def poisoned(worker_cls: type, die_shard: int = -1, fail_shard: int = -1, slow_seconds: float = 0.0) -> type:
    """A subclass of ``worker_cls`` with faults; built at run time, so Ray pickles it by value."""
    return type(f"Poisoned{worker_cls.__name__}", (PoisonMixin, worker_cls),
                {"die_shard": die_shard, "fail_shard": fail_shard, "slow_seconds": slow_seconds})
