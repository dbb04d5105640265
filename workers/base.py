"""The worker contract: load the model once, pick the device, turn one shard into committed outputs.

A worker either implements :meth:`ShardWorker.run_shard` whole, or the three stages of a shard —
:meth:`~ShardWorker.read_shard` (input into memory), :meth:`~ShardWorker.compute_shard` (the model)
and :meth:`~ShardWorker.write_shard` (encode and write the outputs). A staged worker is pipelined
when two calls of :meth:`~ShardWorker.process` run at once (the runner starts it as a threaded Ray
actor with ``max_concurrency=2`` and keeps two shards in flight per worker): each stage has its own
lock, so the next shard is read while this one computes, and this one's outputs are encoded and
written while the next computes. At most two shards are in a worker at once (memory stays bounded),
and each call still commits its own shard, marker last, before it returns.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Literal

from dl3d.data import DataError, JobOutput, Shard

if TYPE_CHECKING:  # torch is imported where a device is picked: the driver and light workers never import it
    import torch

PHASES = ("read", "compute", "write", "commit")
"""The stages of a shard in a worker, in order; ``ShardResult.phases`` also has ``wait`` (seconds the
call waited for a stage another shard held)."""


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
    status: Literal["ok", "bad_input", "error"]
    """``error``: the shard raised (only from :meth:`ShardWorker.process_batch`; ``process`` raises instead)."""
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None
    worker: dict[str, Any] = field(default_factory=dict)
    row_status: dict[str, int] = field(default_factory=dict)
    """Output rows per row status, for jobs whose output has a ``status`` column (else empty)."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds of this shard per stage: ``read``, ``compute``, ``write`` (encode and write the outputs),
    ``commit`` (the marker), ``wait`` (for a stage the worker's other shard held). A worker that
    implements ``run_shard`` whole reports it all as ``compute``."""

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


def keep_freed_memory(heap_top: int = 1 << 30) -> bool:
    """Make this process keep the memory it frees, rather than give it back to the kernel after each large free.

    Every Adam step of a fit allocates and frees the same tensors of a few MB. glibc's defaults serve such
    blocks by ``mmap`` or trim the heap's free top, so each step faults the pages in again: a fused fit of
    4,000 rows took 195,000 page faults and 3.3 s, with this 900 and 2.7 s (same peak RSS, 0.95 GB). Blocks
    up to 32 MB (glibc's largest mmap threshold) come from the heap, and up to ``heap_top`` bytes of free
    heap top stay mapped: the process holds its peak, it does not grow past it. Returns False (and changes
    nothing) where the C library has no ``mallopt``."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, int(heap_top)))


def pick_device() -> "torch.device":
    """``cuda`` when Ray gave this worker a GPU and CUDA is present, else ``cpu``.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the assigned ids, so the assigned GPU is ``cuda:0`` here.
    Outside Ray (a plain call in a test or a notebook) the first visible GPU is used when there is one.
    On a CPU box with fake GPU resources an id is assigned but CUDA is absent: ``cpu``.
    """
    import torch

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


def worker_info(device: "torch.device") -> dict[str, Any]:
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


class _Activity:
    """Wall seconds during which at least one stage of this worker was running (the union, not the sum)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.since = 0.0
        self.busy = 0.0

    def enter(self) -> None:
        with self.lock:
            if self.active == 0:
                self.since = time.perf_counter()
            self.active += 1

    def leave(self) -> None:
        with self.lock:
            self.active -= 1
            if self.active == 0:
                self.busy += time.perf_counter() - self.since


class ShardWorker:
    """Base class for the model workers.

    Subclasses set ``config_cls`` and implement :meth:`setup` (load the model once, on
    ``self.device``) and either the stages :meth:`read_shard`, :meth:`compute_shard` and
    :meth:`write_shard` (pipelined: see the module docstring) or :meth:`run_shard` whole (read,
    compute, write; one shard at a time). :meth:`process` commits the shard after its outputs are
    written, so the marker is always the last object written.
    """

    config_cls: ClassVar[type] = object
    job_kind: ClassVar[str] = ""
    fuse_shards: ClassVar[int] = 1
    """Up to this many shards computed in one :meth:`compute_shards` call, for a model that runs faster per row
    on bigger batches (SMPLify on a CPU is bound by its per-operation cost: 4,000 rows fit in 2.8 s as one
    batch, 3.2 s as two, 3.7 s as four, one thread). The runner then hands a staged worker several shards per call
    (each still read, written and committed on its own); 1: never."""

    def __init__(self, config: Any, num_threads: int | None = None):
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{type(self).__name__} expects a {self.config_cls.__name__}, got {type(config).__name__}")
        started = time.time()
        keep_freed_memory()  # a worker process repeats the same allocations shard after shard
        self.config = config
        self.device = self.pick_device()
        if num_threads:
            import torch

            torch.set_num_threads(max(1, int(num_threads)))
        self._locks = {name: threading.Lock() for name in ("read", "compute", "write")}
        self._whole = threading.Lock()
        self._activity = _Activity()
        self._calls = threading.local()
        self._info: dict[str, Any] | None = None
        self._outputs: dict[str, JobOutput] = {}
        self.setup()
        self._ready = time.time()
        self._setup_s = self._ready - started

    _staged: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "read_shard" in vars(cls):  # recorded when the class is made, so it holds in a Ray actor too (there,
            cls._staged = True  # ``cls.read_shard is ShardWorker.read_shard`` is False even for an unstaged class)

    @classmethod
    def staged(cls) -> bool:
        """True when the class implements the three stages: two shards can then be in it at once
        (pipelined). A class that also overrides ``run_shard`` must call ``super().run_shard``."""
        return cls._staged

    @staticmethod
    def pick_device() -> "torch.device":
        """This worker's device (:func:`pick_device`); a worker that runs no model may answer without torch."""
        return pick_device()

    @classmethod
    def preflight(cls, config: Any) -> None:
        """Cheap checks run by the driver before any worker starts (e.g. the model file exists)."""

    def setup(self) -> None:
        """Load the model. Called once per worker."""

    # -- the stages of a shard (a staged worker implements these three) --------------------------
    def read_shard(self, task: ShardTask) -> Any:
        """Read and check the shard's input into memory; raise ``DataError`` for bad input."""
        raise NotImplementedError

    def compute_shard(self, task: ShardTask, data: Any) -> Any:
        """Run the model on what :meth:`read_shard` returned; return what :meth:`write_shard` needs."""
        raise NotImplementedError

    def compute_shards(self, tasks: list[ShardTask], data: list[Any]) -> list[Any]:
        """:meth:`compute_shard` of several shards in one call (see :attr:`fuse_shards`); by default one by one."""
        return [self.compute_shard(task, d) for task, d in zip(tasks, data)]

    def write_shard(self, task: ShardTask, out: JobOutput, result: Any) -> int:
        """Encode and write the shard's outputs (files, then its part) through ``out``; return its rows."""
        raise NotImplementedError

    def run_shard(self, task: ShardTask, out: JobOutput) -> int:
        """Read, compute and write one shard; returns its rows. A staged worker's stages run here, each
        under its own lock; a worker that is not staged overrides this whole."""
        with self.stage("read"):
            data = self.read_shard(task)
        with self.stage("compute"):
            result = self.compute_shard(task, data)
            del data
        with self.stage("write"):
            out.clear_leftovers(task.shard.index, shared_folders=False)  # an interrupted attempt's partial files
            return self.write_shard(task, out, result)

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Hold stage ``name``'s lock for the block (one shard per stage at a time); the block's seconds go
        to the calling shard's phases, the seconds spent waiting for the lock to its ``wait``."""
        phases = getattr(self._calls, "phases", None)
        t0 = time.perf_counter()
        with self._locks[name]:
            t1 = time.perf_counter()
            self._activity.enter()
            try:
                yield
            finally:
                self._activity.leave()
                if phases is not None:
                    phases["wait"] += t1 - t0
                    phases[name] += time.perf_counter() - t1

    def info(self) -> dict[str, Any]:
        """Where this worker runs (:func:`worker_info`); it does not change, so it is asked once."""
        if self._info is None:
            self._info = worker_info(self.device)
        return dict(self._info)

    def _output(self, url: str) -> JobOutput:
        """One ``JobOutput`` per output URL for the worker's life (resolving the filesystem costs more than a
        small shard's commit)."""
        out = self._outputs.get(url)
        if out is None:
            out = self._outputs[url] = JobOutput(url)
        return out

    def _timing(self) -> dict[str, Any]:
        """When the worker was ready (epoch seconds), how long ``__init__`` took (model load), and its
        busy seconds so far (some stage running)."""
        return {"ready_at": self._ready, "setup_s": round(self._setup_s, 4), "busy_s": round(self._activity.busy, 4)}

    def process(self, task: ShardTask) -> ShardResult:
        """Run one shard and commit it. Input problems come back as ``bad_input``; other errors raise
        (no marker is written then). Two calls may run at once (threads): a staged worker pipelines
        them, any other runs them one after the other."""
        if self.staged():
            return self._process(task, lambda out, phases: self.run_shard(task, out))
        return self._process(task, lambda out, phases: self._run_whole(task, out, phases))

    def _process(self, task: ShardTask, run: Callable[[JobOutput, dict[str, float]], int],
                 phases: dict[str, float] | None = None, before_s: float = 0.0) -> ShardResult:
        """:meth:`process` with the shard's work given as ``run(out, phases) -> rows``; ``before_s``: seconds
        this shard already had (its share of a fused read and compute)."""
        phases = phases or dict.fromkeys((*PHASES, "wait"), 0.0)
        self._calls.phases = phases
        t0 = time.perf_counter() - before_s
        out = self._output(task.output_url)
        staged = self.staged()
        try:
            with (nullcontext() if staged else self._timed(self._whole, phases)):
                try:
                    rows = run(out, phases)
                except DataError as exc:
                    return ShardResult(task.shard.index, "bad_input", seconds=time.perf_counter() - t0,
                                       error=str(exc), worker=self.info() | self._timing(), phases=_rounded(phases))
                seconds = time.perf_counter() - t0
                with (self._timed(self._locks["write"], phases) if staged else nullcontext()):
                    t_commit = time.perf_counter()
                    self._activity.enter()
                    try:
                        out.commit(task.shard.index,
                                   {"input": task.shard.url, "rows": rows, "seconds": round(seconds, 4),
                                    "attempt": task.attempt, "run_id": task.run_id, "worker": self.info()})
                    finally:
                        self._activity.leave()
                        phases["commit"] += time.perf_counter() - t_commit
        finally:
            self._calls.phases = None
            row_status = out.row_status.pop(task.shard.index, {})
        return ShardResult(task.shard.index, "ok", rows=rows, seconds=time.perf_counter() - t0,
                           worker=self.info() | self._timing(), row_status=row_status, phases=_rounded(phases))

    def process_batch(self, tasks: list[ShardTask]) -> list[ShardResult]:
        """:meth:`process` on each task in turn, in one call (the runner batches small shards so that Ray's
        per-call cost is paid once per batch), or, for a worker that fuses shards (:attr:`fuse_shards`), read
        all, compute them in one :meth:`compute_shards` call, then write and commit each. Each shard is still
        committed on its own; one that raises comes back as status ``error`` with its traceback, and the
        others go on."""
        if len(tasks) > 1 and self.fuse_shards > 1 and self.staged():
            return self._process_fused(tasks)
        results = []
        for task in tasks:
            try:
                results.append(self.process(task))
            except Exception as exc:  # noqa: BLE001 - reported per shard; the runner retries it
                results.append(self._error(task, exc))
        return results

    def _error(self, task: ShardTask, exc: BaseException, status: str = "error") -> ShardResult:
        error = str(exc) if status == "bad_input" else format_exception(exc)
        return ShardResult(task.shard.index, status, error=error, worker=self.info() | self._timing())

    def _process_fused(self, tasks: list[ShardTask]) -> list[ShardResult]:
        """Read every shard, compute the readable ones in one :meth:`compute_shards` call (when that raises,
        each alone, so that only a shard at fault fails), then write and commit each in turn. The fused
        call's seconds (and its wait for the compute stage) are shared out evenly over its shards."""
        t0 = time.perf_counter()
        phases = [dict.fromkeys((*PHASES, "wait"), 0.0) for _ in tasks]
        done: dict[int, ShardResult] = {}
        data: dict[int, Any] = {}
        for i, task in enumerate(tasks):
            self._calls.phases = phases[i]
            try:
                with self.stage("read"):
                    data[i] = self.read_shard(task)
            except DataError as exc:
                done[i] = self._error(task, exc, "bad_input")
            except Exception as exc:  # noqa: BLE001 - reported per shard; the runner retries it
                done[i] = self._error(task, exc)
        shared = dict.fromkeys((*PHASES, "wait"), 0.0)
        self._calls.phases = shared
        computed: dict[int, Any] = {}
        try:
            with self.stage("compute"):
                keys = list(data)
                results = self.compute_shards([tasks[i] for i in keys], [data[i] for i in keys])
                if len(results) != len(keys):
                    raise RuntimeError(f"compute_shards returned {len(results)} results for {len(keys)} shards")
                computed = dict(zip(keys, results))
                del results
        except Exception as exc:  # noqa: BLE001 - one shard may be at fault: each alone, so that only it fails
            logging.getLogger(__name__).warning("the fused compute of shards %s raised (%s: %s); computing each alone",
                                                [t.shard.index for t in tasks], type(exc).__name__, exc)
            for i in data:
                self._calls.phases = phases[i]
                try:
                    with self.stage("compute"):
                        computed[i] = self.compute_shard(tasks[i], data[i])
                except DataError as exc:
                    done[i] = self._error(tasks[i], exc, "bad_input")
                except Exception as exc:  # noqa: BLE001
                    done[i] = self._error(tasks[i], exc)
        data.clear()
        for p in phases:
            p["compute"] += shared["compute"] / len(tasks)
            p["wait"] += shared["wait"] / len(tasks)
        before = (time.perf_counter() - t0) / len(tasks)
        for i, task in enumerate(tasks):
            if i in done:
                continue
            result = computed.pop(i)

            def write(out: JobOutput, _phases: dict[str, float], task: ShardTask = task, result: Any = result) -> int:
                with self.stage("write"):
                    out.clear_leftovers(task.shard.index, shared_folders=False)
                    return self.write_shard(task, out, result)

            try:
                done[i] = self._process(task, write, phases[i], before_s=before)
            except Exception as exc:  # noqa: BLE001 - reported per shard; the runner retries it
                done[i] = self._error(task, exc)
            del result, write
        return [done[i] for i in range(len(tasks))]

    def _run_whole(self, task: ShardTask, out: JobOutput, phases: dict[str, float]) -> int:
        """A worker that is not staged: its ``run_shard`` timed as ``compute`` (less what stages inside it timed)."""
        t = time.perf_counter()
        staged = sum(phases.values())
        self._activity.enter()
        try:
            out.clear_leftovers(task.shard.index, shared_folders=False)
            return self.run_shard(task, out)
        finally:
            self._activity.leave()
            phases["compute"] += time.perf_counter() - t - (sum(phases.values()) - staged)

    @contextmanager
    def _timed(self, lock: threading.Lock, phases: dict[str, float]) -> Iterator[None]:
        t = time.perf_counter()
        with lock:
            phases["wait"] += time.perf_counter() - t
            yield


def _rounded(phases: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in phases.items()}


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
