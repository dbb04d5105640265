"""The worker contract: load the model once, pick the device, turn one shard into committed outputs."""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import torch

from dl3d.data import DataError, JobOutput, Shard


@dataclass(frozen=True)
class ShardTask:
    """What the runner hands a worker: one input shard and where its outputs go."""

    shard: Shard
    output_url: str
    attempt: int = 1
    run_id: str = ""


@dataclass
class ShardResult:
    """What a worker returns for one shard."""

    index: int
    status: Literal["ok", "bad_input"]
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None
    worker: dict[str, Any] = field(default_factory=dict)
    row_status: dict[str, int] = field(default_factory=dict)
    """Output rows per row status, for jobs whose output has a ``status`` column (else empty)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def assigned_gpu_ids() -> list[str]:
    """GPU ids Ray assigned to this process ([] outside Ray or without GPUs)."""
    try:
        import ray

        if ray.is_initialized():
            return [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001 - no Ray context: no assignment
        pass
    return []


def pick_device() -> torch.device:
    """``cuda`` when Ray gave this worker a GPU and CUDA is present, else ``cpu``.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the assigned ids, so the assigned GPU is ``cuda:0`` here.
    Outside Ray (a plain call in a test or a notebook) the first visible GPU is used when there is one.
    On a CPU box with fake GPU resources an id is assigned but CUDA is absent: ``cpu``.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if assigned_gpu_ids():
        return torch.device("cuda", 0)
    try:
        import ray

        in_ray = ray.is_initialized()
    except ImportError:
        in_ray = False
    return torch.device("cpu") if in_ray else torch.device("cuda", 0)


def worker_info(device: torch.device) -> dict[str, Any]:
    """Where this worker runs: host, pid, Ray node id, assigned GPU ids, device."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "device": str(device)}
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            info["node_id"] = ctx.get_node_id()
            info["gpu_ids"] = assigned_gpu_ids()
            info["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


class ShardWorker:
    """Base class for the model workers.

    Subclasses set ``config_cls`` and implement :meth:`setup` (load the model once, on
    ``self.device``) and :meth:`run_shard` (read the shard, compute, write its outputs through the
    given :class:`JobOutput`, return the number of rows). :meth:`process` commits the shard after
    ``run_shard`` returns, so the marker is always the last object written.
    """

    config_cls: ClassVar[type] = object
    job_kind: ClassVar[str] = ""

    def __init__(self, config: Any, num_threads: int | None = None):
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{type(self).__name__} expects a {self.config_cls.__name__}, got {type(config).__name__}")
        self.config = config
        self.device = pick_device()
        if num_threads:
            torch.set_num_threads(max(1, int(num_threads)))
        self.setup()

    @classmethod
    def preflight(cls, config: Any) -> None:
        """Cheap checks run by the driver before any worker starts (e.g. the model file exists)."""

    def setup(self) -> None:
        """Load the model. Called once per worker."""

    def run_shard(self, task: ShardTask, out: JobOutput) -> int:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return worker_info(self.device)

    def process(self, task: ShardTask) -> ShardResult:
        """Run one shard and commit it. Input problems come back as ``bad_input``; other errors raise."""
        t0 = time.perf_counter()
        out = JobOutput(task.output_url)
        try:
            rows = self.run_shard(task, out)
        except DataError as exc:
            return ShardResult(
                task.shard.index, "bad_input", seconds=time.perf_counter() - t0, error=str(exc), worker=self.info()
            )
        seconds = time.perf_counter() - t0
        out.commit(
            task.shard.index,
            {"input": task.shard.url, "rows": rows, "seconds": round(seconds, 4), "attempt": task.attempt,
             "run_id": task.run_id, "worker": self.info()},
        )
        return ShardResult(task.shard.index, "ok", rows=rows, seconds=seconds, worker=self.info(),
                           row_status=out.row_status.get(task.shard.index, {}))


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
