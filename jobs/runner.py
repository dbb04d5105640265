"""The shard runner: dl3d's one scheduler of its own, because Ray Data gives no per-shard exactly-once commit.

Why it exists: every input shard must be committed exactly once - its Parquet part, its mesh or
image files, then a commit marker written last - so that a re-run skips committed shards and redoes
half-written ones, a shard that keeps failing is recorded by identity under ``_errors/``, and no row
is lost or duplicated whatever is killed when. Ray Data does not offer that: ``write_parquet`` names
files by uuid and task in append mode (a re-run duplicates output; ``mode="overwrite"`` is not
atomic, ray#55043), and its checkpointing (``ray.data.checkpoint``) needs a read -> map -> write
pipeline and keeps every finished id in memory (ray#65891). ``ray.util.ActorPool`` does not either:
its ``get_next_unordered`` re-raises a failed call's exception without saying which input it was,
and a shard must be retried by identity. Everything else is Ray's own: actors, resources, restarts.

How: a job is a worker class (``dl3d.workers``) plus its config. The runner lists the input shards,
skips those whose commit marker exists in the output, starts the workers as Ray actors with the
placement's ``gpus_per_worker`` / ``cpus_per_worker`` (``dl3d.jobs.placement``) and Ray-managed
restarts (a worker process that dies is replaced by Ray), and keeps every worker busy with
``ray.wait``. A shard whose worker raised or died is put back in the queue for the next live worker,
up to ``max_attempts``; bad input is not retried. Final failures are written to ``_errors/``, the
run to ``_job.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import ray
from tqdm import tqdm

from dl3d.data import JobOutput, Shard, list_shards
from dl3d.jobs.job_guard import OutputUnusable, check_input, job_spec, take_output
from dl3d.jobs.job_report import JobReport, ShardLedger, ShardOutcome, WorkerTotals  # noqa: F401  (re-exported)
from dl3d.jobs.placement import plan_workers
from dl3d.jobs.ray_env import cluster_cpus, cluster_gpus, ensure_ray, worker_runtime_env
from dl3d.jobs.runner_config import RunnerConfig  # noqa: F401  (defined apart so the CLI needs no Ray)
from dl3d.workers.base import ShardTask, ShardWorker

IN_FLIGHT_PER_WORKER = 2
"""Calls handed to each worker at once: one it works on, one waiting (or, for a staged worker, being read)."""
MAX_BATCH = 16
"""Most shards in one call: small shards go to a worker in batches (``ShardWorker.process_batch``) so that Ray's
cost per call (about a millisecond of driver and worker CPU) is paid per batch; see :class:`_Batcher`."""

VERSIONED_PACKAGES = ("dl3d", "torch", "easypytorch3d", "smplx", "ray", "pyarrow", "fsspec", "s3fs", "numpy")


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_shards(
    job: str,
    worker_cls: type[ShardWorker],
    worker_config: Any,
    input_url: str,
    output_url: str,
    runner: RunnerConfig,
) -> JobReport:
    """Run ``worker_cls`` over every uncommitted shard of ``input_url`` into ``output_url``.

    Before Ray starts: the input is checked (``job_guard.check_input``), the output leased and checked
    against the job its earlier outputs belong to (``job_guard.take_output``); those raise ValueErrors.
    SIGTERM is handled like SIGINT (KeyboardInterrupt); ``_job.json`` then says ``interrupted``.
    """
    started = time.time()
    run_id = uuid.uuid4().hex[:12]
    with _sigterm_as_interrupt():
        worker_cls.preflight(worker_config)
        shards = list_shards(input_url)
        check_input(input_url, shards)
        out = JobOutput(output_url)
        spec = job_spec(job, worker_config, input_url)
        lease, notes = take_output(out, spec, run_id, runner.overwrite)
        try:
            return _run_leased(job, worker_cls, worker_config, input_url, output_url, runner, run_id, started, shards,
                               out, spec, lease, notes)
        finally:
            lease.release()


def _run_leased(job: str, worker_cls: type[ShardWorker], worker_config: Any, input_url: str, output_url: str,
                runner: RunnerConfig, run_id: str, started: float, shards: list[Shard], out: JobOutput,
                spec: dict[str, Any], lease: Any, notes: list[str]) -> JobReport:
    committed = out.committed()
    todo = [s for s in shards if s.index not in committed]
    ledger = ShardLedger(s.index for s in shards)
    ledger.mark(committed, "skipped")
    meta = {
        "job": job, "run_id": run_id, "status": "running", "input": input_url, "output": output_url,
        "started": _iso(started), "config": dataclasses.asdict(worker_config), "spec": spec,
        "runner": dataclasses.asdict(runner), "versions": package_versions(),
    }
    try:
        out.write_job_meta(meta)
    except OSError as exc:
        raise OutputUnusable(f"cannot write {out.url.rstrip('/')}/_job.json: {exc}") from None
    cleared = out.clear_shared_leftovers()  # parts' and markers' partial files; workers clear their own folders
    if cleared:
        notes = [*notes, f"removed {len(cleared)} partial files an interrupted run left"]
    clock = _Clock(started)
    clock.lap("plan")
    where = ensure_ray(runner.ray_address, state_api=False)
    signal_guard = _sigterm_as_interrupt()  # ray.init installed its own SIGTERM handler: take it back
    signal_guard.__enter__()
    placed = plan_workers(runner, cluster_gpus(), cluster_cpus(), cpu_auto="fill", max_workers=len(todo))
    num_gpus, n_workers = placed.gpus_per_worker, placed.workers
    meta.update(runner=dataclasses.asdict(runner) | {"workers": n_workers, "gpus_per_worker": num_gpus,
                                                     "in_flight_per_worker": IN_FLIGHT_PER_WORKER},
                ray={"where": where, "nodes": len(ray.nodes()), "resources": ray.cluster_resources()})
    report = JobReport(job, output_url, ledger, 0.0, notes=list(notes))
    totals = WorkerTotals(started)
    bar = tqdm(total=len(shards), initial=len(committed), unit="shard", desc=job, disable=not runner.progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        _record(report, "_job.json", lambda: out.write_job_meta(meta))
        clock.lap("ray")
        if todo:
            options = dict(num_cpus=runner.cpus_per_worker, num_gpus=num_gpus, max_restarts=-1, max_task_retries=0,
                           max_concurrency=IN_FLIGHT_PER_WORKER if worker_cls.staged() else 1)
            if worker_runtime_env():
                options["runtime_env"] = worker_runtime_env()
            actor_cls = ray.remote(worker_cls).options(**options)
            actors = [actor_cls.remote(worker_config, num_threads=int(runner.cpus_per_worker)) for _ in range(n_workers)]
            try:
                _dispatch(todo, actors, output_url, run_id, runner.max_attempts,
                          _Books(out, ledger, totals, bar, report, lease, clock),
                          fuse_shards=worker_cls.fuse_shards if worker_cls.staged() else 1)
            finally:
                for a in actors:
                    ray.kill(a)
    except KeyboardInterrupt:
        bar.close()
        meta.update(status="interrupted", finished=_iso(time.time()), seconds=round(time.time() - started, 3),
                    shards=ledger.compact(), timings=clock.seconds(), workers=totals.records(time.time() - started))
        _record(report, "_job.json", lambda: out.write_job_meta(meta))
        raise
    finally:
        signal_guard.__exit__(None, None, None)
    bar.close()
    report.seconds = time.time() - started
    report.workers = totals.records(report.seconds)
    clock.lap("finish")
    report.timings = clock.seconds()
    meta.update(
        status="aborted" if report.aborted else ("failed" if report.failed else "ok"), finished=_iso(time.time()),
        seconds=round(report.seconds, 3),
        counts={"shards": len(shards), "committed": report.count("ok"), "skipped": report.count("skipped"),
                "failed": len(report.failed), "rows": report.rows, "row_status": report.row_status,
                "rows_not_ok": sum(report.rows_not_ok.values()),
                "rows_per_s": round(report.rows / report.seconds, 2) if report.seconds else 0.0},
        notes=report.notes, aborted=report.aborted, unrecorded=list(report.unrecorded),
        timings=report.timings, workers=report.workers, shards=ledger.compact(),
    )
    if not report.aborted:  # after a lost lease another run owns the output: leave its _job.json alone
        _record(report, "_job.json", lambda: out.write_job_meta(meta))
    return report


class _Clock:
    """The driver's own seconds per phase: ``plan`` (listing, checks, lease), ``ray`` (start or join Ray,
    placement), ``dispatch`` (its loop's own work), ``wait`` (in ``ray.wait``), ``finish``."""

    def __init__(self, started: float):
        self.t = started
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.time()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.t
        self.t = now

    def seconds(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.laps.items()}


@dataclass
class _Books:
    """What the dispatch loop records into."""

    out: JobOutput
    ledger: ShardLedger
    totals: WorkerTotals
    bar: Any
    report: JobReport
    lease: Any
    clock: _Clock


def _record(report: JobReport, what: str, write) -> bool:
    """Run ``write``; on failure note in ``report.unrecorded`` what could not be recorded, and why."""
    try:
        write()
        return True
    except Exception as exc:  # noqa: BLE001 - a full disk, storage gone: the summary must still come out
        report.unrecorded.append(f"{report.output.rstrip('/')}/{what}: {type(exc).__name__}: {_last_line(str(exc))}")
        return False


class _sigterm_as_interrupt:
    """Within the block SIGTERM (what Kubernetes and ``kill`` send) raises KeyboardInterrupt, as SIGINT does,
    instead of Ray's handler (which exits from inside Ray's core and can abort with a C++ stack dump)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _dispatch(todo: list[Shard], actors: list, output_url: str, run_id: str, max_attempts: int, books: _Books,
              fuse_shards: int = 1) -> None:
    """Keep ``IN_FLIGHT_PER_WORKER`` shards in every live worker until each shard is committed or has
    failed ``max_attempts`` times.

    A worker runs its calls in order (a staged one pipelines two: the second is read while the first
    computes), so the second shard waits inside the worker instead of for a round trip to the driver.
    A worker whose process died is restarted by Ray (``max_restarts``); it gets no shard until a ping
    with unlimited retries comes back, so a retry never lands on a worker that is still down. When a
    worker dies with two shards in it, the attempt is charged to the older one (the one it was working
    on); the other is put back uncharged, once per shard (a shard that kills its worker again is charged).
    Small shards travel in batches (:class:`_Batcher`): each is still committed, recorded and retried on
    its own; when a worker that held a batch dies, nothing in it is charged, and the batch's shards go
    one per call from then on (so a shard that kills workers is found and charged as above).
    """
    out, ledger, bar, report, lease, clock = books.out, books.ledger, books.bar, books.report, books.lease, books.clock
    queue: deque[tuple[Shard, int]] = deque((s, 1) for s in todo)
    batcher = _Batcher(len(actors) * IN_FLIGHT_PER_WORKER, fuse=fuse_shards, total=len(todo))
    slots = deque(a for _ in range(IN_FLIGHT_PER_WORKER) for a in actors)  # one entry per free place in a worker
    created = {a._actor_id: time.time() for a in actors}
    inflight: dict[ray.ObjectRef, tuple[list[tuple[Shard, int]], Any]] = {}  # ref -> its (shard, attempt)s, actor
    order: dict[Any, deque[ray.ObjectRef]] = {a._actor_id: deque() for a in actors}  # each worker's refs, oldest first
    verdict: dict[ray.ObjectRef, bool] = {}  # refs of a worker that died: charged an attempt or not
    spared: set[int] = set()  # shards put back uncharged once already
    recovering: dict[ray.ObjectRef, Any] = {}
    progress = _Progress(bar)
    while inflight or (queue and (slots or recovering)):
        if lease.lost.is_set() and not report.aborted:
            report.aborted = ("another run took over the lease on the output; no shard was handed to a worker after "
                              "that (those already in a worker finished)")
        if report.aborted:  # let the shards in flight finish, start no other
            queue.clear()
            if not inflight:
                break
        while queue and slots:
            items = batcher.take(queue)
            actor = slots.popleft()
            tasks = [ShardTask(shard, output_url, attempt, run_id) for shard, attempt in items]
            ref = actor.process.remote(tasks[0]) if len(tasks) == 1 else actor.process_batch.remote(tasks)
            inflight[ref] = (items, actor)
            order[actor._actor_id].append(ref)
        clock.lap("dispatch")
        waiting = list(inflight) + list(recovering)
        ready, _ = ray.wait(waiting, num_returns=1)
        if len(waiting) > 1:  # everything else that is done too: one pass of bookkeeping for all of them
            ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
        clock.lap("wait")
        got = _get_all([r for r in ready if r in inflight])
        for ref in ready:
            if ref in recovering:
                actor = recovering.pop(ref)
                try:
                    ray.get(ref)
                    slots.extend([actor] * IN_FLIGHT_PER_WORKER)
                except ray.exceptions.RayError as exc:  # gone for good (e.g. its node left and no other fits it)
                    bar.write(f"a worker could not be restarted and is dropped: {_last_line(str(exc))}")
                continue
            items, actor = inflight.pop(ref)
            mine = order[actor._actor_id]
            failed: list[tuple[Shard, int, str]] = []
            try:
                got_ref = got[ref] if ref in got else ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                if ref not in verdict:  # the first of this death's refs: the oldest in the worker is charged,
                    # none when it held a batch (which of its shards killed it is unknown)
                    batch = len(items) > 1 or any(len(inflight[r][0]) > 1 for r in mine if r in inflight)
                    verdict.update((r, i == 0 and not batch) for i, r in enumerate(mine))
                    slots = deque(a for a in slots if a._actor_id != actor._actor_id)
                    recovering[actor.info.options(max_task_retries=-1).remote()] = actor
                charged = verdict.pop(ref)
                mine.remove(ref)
                if len(items) > 1:  # which shard of the batch killed it is unknown: each goes back, uncharged, alone
                    batcher.single.update(shard.index for shard, _ in items)
                    queue.extendleft(reversed(items))
                    continue
                shard, attempt = items[0]
                if not charged and shard.index not in spared:
                    spared.add(shard.index)  # once per shard: one that keeps killing workers is charged after
                    queue.appendleft((shard, attempt))
                    continue
                failed.append((shard, attempt, f"worker died while processing the shard (attempt {attempt}): {exc}"))
            except ray.exceptions.RayTaskError as exc:
                mine.remove(ref)
                verdict.pop(ref, None)
                slots.append(actor)
                failed.extend((shard, attempt, f"attempt {attempt}: {exc}") for shard, attempt in items)
            else:
                mine.remove(ref)
                verdict.pop(ref, None)
                slots.append(actor)
                for (shard, attempt), result in zip(items, got_ref if len(items) > 1 else [got_ref]):
                    if result.status == "error":
                        failed.append((shard, attempt, f"attempt {attempt}: {result.error}"))
                        continue
                    books.totals.add(result.worker, result.rows, result.phases, time.time(),
                                     created.get(actor._actor_id))
                    if result.status == "ok":
                        batcher.observe(result.seconds)
                        ledger.record(ShardOutcome(shard.index, "ok", result.rows, result.seconds, attempt,
                                                   worker=result.worker, row_status=dict(result.row_status or {})))
                        progress.add(result.rows)
                    else:
                        _fail(out, shard, "bad_input", attempt, result.error, ledger, result.worker, report)
                        progress.add(0)
            for shard, attempt, error in reversed(failed):
                if attempt < max_attempts:
                    bar.write(f"part-{shard.index:05d}: attempt {attempt} failed, retrying: {_last_line(error)}")
                    queue.appendleft((shard, attempt + 1))
                else:
                    _fail(out, shard, "failed", attempt, error, ledger, {}, report)
                    progress.add(0)
        clock.lap("dispatch")
    progress.flush()
    for shard, attempt in queue:  # every worker is gone
        _fail(out, shard, "failed", attempt - 1, "no live worker left to run the shard", ledger, {}, report)


class _Batcher:
    """How many shards the next call takes. One, until the shards turn out small: once the mean of the
    committed shards' seconds is under ``small_s``, a call takes enough of them to last about ``small_s``
    (at most :data:`MAX_BATCH`), and never more than the queue shared out four times over the ``slots``
    (so the job still ends evenly). A worker that fuses shards (``ShardWorker.fuse_shards``) gets that
    many per call from the start, fewer when the job has under one such call per worker (``total``: the
    shards to run): 16 shards on 2 workers go 8 per call, not 4 per slot, because one fit of 8 shards is
    about 15% faster than two of 4, more than the read and write it no longer overlaps cost. Shards that were
    in a batch when its worker died go alone (``single``), so that the one that killed it is found and
    charged as any other."""

    def __init__(self, slots: int, small_s: float = 0.1, fuse: int = 1, total: int = 0):
        self.slots, self.small_s = max(1, slots), small_s
        workers = max(1, self.slots // IN_FLIGHT_PER_WORKER)
        self.fuse = max(1, min(fuse, total // workers))
        self.mean_s: float | None = None
        self.single: set[int] = set()

    def observe(self, seconds: float) -> None:
        self.mean_s = seconds if self.mean_s is None else 0.9 * self.mean_s + 0.1 * seconds

    def size(self, queued: int) -> int:
        if self.mean_s is None or self.mean_s >= self.small_s:
            return self.fuse
        small = min(MAX_BATCH, int(self.small_s / max(self.mean_s, 1e-6)), queued // (4 * self.slots))
        return max(1, self.fuse, small)

    def take(self, queue: deque) -> list[tuple[Shard, int]]:
        """Pop the next call's (shard, attempt)s off the front of ``queue`` (not empty)."""
        items = [queue.popleft()]
        if items[0][0].index in self.single:
            return items
        n = self.size(len(queue) + 1)
        while len(items) < n and queue and queue[0][0].index not in self.single:
            items.append(queue.popleft())
        return items


def _get_all(refs: list) -> dict:
    """The results of ``refs`` in one ``ray.get`` (far cheaper than one call per ref); ``{}`` when one of them
    failed (each is then fetched alone, so that its error is handled for its own shard)."""
    if len(refs) < 2:
        return {}
    try:
        return dict(zip(refs, ray.get(refs)))
    except ray.exceptions.RayError:
        return {}


class _Progress:
    """The progress bar, redrawn at most every ``every`` seconds (not once per shard)."""

    def __init__(self, bar, every: float = 0.25):
        self.bar, self.every = bar, every
        self.started = time.time()
        self.last = 0.0
        self.shards = 0
        self.rows = 0

    def add(self, rows: int) -> None:
        self.shards += 1
        self.rows += rows
        if time.time() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        self.bar.update(self.shards)
        self.shards = 0
        self.last = time.time()
        self.bar.set_postfix(rows=self.rows, rows_per_s=f"{self.rows / max(self.last - self.started, 1e-9):.1f}",
                             refresh=False)


def _fail(out: JobOutput, shard: Shard, status: str, attempts: int, error: str | None, ledger: ShardLedger,
          worker: dict[str, Any], report: JobReport) -> None:
    ledger.record(ShardOutcome(shard.index, status, attempts=attempts, error=error, worker=worker))
    _record(report, f"_errors/part-{shard.index:05d}.json", lambda: out.record_error(
        shard.index, {"input": shard.url, "status": status, "attempts": attempts, "error": error, "worker": worker,
                      "time": _iso(time.time())}))


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")
