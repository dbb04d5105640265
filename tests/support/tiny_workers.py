"""A worker whose shards cost almost nothing (imported by Ray workers through PYTHONPATH, see conftest):
it reads nothing and writes a one-row part per shard, so the runner's own cost per shard shows."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa

from dl3d.workers.base import ShardWorker


@dataclass
class TinyConfig:
    """Nothing to configure."""


class TinyWorker(ShardWorker):
    """Staged; ``write_shard`` writes ``part-NNNNN.parquet`` with the single row ``{"index": N}``."""

    config_cls = TinyConfig

    @staticmethod
    def pick_device():
        return "cpu"

    def read_shard(self, task):
        return None

    def compute_shard(self, task, data):
        return task.shard.index

    def write_shard(self, task, out, result):
        out.write_part(task.shard.index, pa.table({"index": [result]}))
        return 1


def dies_once(worker_cls: type, shard: int, flag: str) -> type:
    """A subclass of ``worker_cls`` whose process exits at shard ``shard`` the first time any worker meets
    it (``flag``: a file that records that it did); built at run time, so Ray pickles it by value."""

    def compute_shard(self, task, data):
        if task.shard.index == shard and not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(17)
        return worker_cls.compute_shard(self, task, data)

    return type(f"DiesOnce{worker_cls.__name__}", (worker_cls,), {"compute_shard": compute_shard})


class FusingTinyWorker(TinyWorker):
    """A :class:`TinyWorker` that fuses up to 8 shards per compute call; ``compute_shards`` records each call's
    shard indices in ``self.fused`` and raises when ``poison`` is among them (``compute_shard`` raises for it too)."""

    fuse_shards = 8
    poison = -1

    def setup(self):
        self.fused: list[list[int]] = []

    def compute_shards(self, tasks, data):
        indices = [t.shard.index for t in tasks]
        self.fused.append(indices)
        if self.poison in indices:
            raise RuntimeError(f"shard {self.poison} poisons its batch")
        return [i * 10 for i in indices]

    def compute_shard(self, task, data):
        if task.shard.index == self.poison:
            raise RuntimeError(f"shard {self.poison} is poisoned")
        return task.shard.index * 10


class WholeTinyWorker(ShardWorker):
    """Not staged: ``run_shard`` whole, sleeping 50 ms, then a one-row part like :class:`TinyWorker`'s."""

    config_cls = TinyConfig

    @staticmethod
    def pick_device():
        return "cpu"

    def run_shard(self, task, out):
        import time

        time.sleep(0.05)
        out.write_part(task.shard.index, pa.table({"index": [task.shard.index]}))
        return 1
