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
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import ray
from tqdm import tqdm

from dl3d.data import JobOutput, Shard, list_shards
from dl3d.jobs.job_guard import OutputUnusable, check_input, job_spec, take_output
from dl3d.jobs.placement import plan_workers
from dl3d.jobs.ray_env import cluster_cpus, cluster_gpus, ensure_ray, worker_runtime_env
from dl3d.jobs.runner_config import RunnerConfig  # noqa: F401  (defined apart so the CLI needs no Ray)
from dl3d.workers.base import ShardResult, ShardTask, ShardWorker

VERSIONED_PACKAGES = ("dl3d", "torch", "easypytorch3d", "smplx", "ray", "pyarrow", "fsspec", "s3fs", "numpy")


@dataclass
class ShardOutcome:
    index: int
    status: str
    """``ok``, ``skipped`` (committed before this run), ``failed`` or ``bad_input``."""
    rows: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None
    worker: dict[str, Any] = field(default_factory=dict)
    row_status: dict[str, int] = field(default_factory=dict)
    """Rows per row status (``ok``, ``nonfinite_fit``, ...) for jobs whose output has a status column."""


@dataclass
class JobReport:
    """What a run did; ``exit_code`` is 0 only when every shard is committed and everything recorded."""

    job: str
    output: str
    shards: list[ShardOutcome]
    seconds: float
    notes: list[str] = field(default_factory=list)
    """Things the run did besides the shards (a stale lease taken over, --overwrite)."""
    unrecorded: list[str] = field(default_factory=list)
    """Records that could not be written (``_errors/...``, ``_job.json``: a full disk, storage gone)."""
    aborted: str | None = None
    """Why the run stopped early (its lease on the output was lost), or None."""

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.shards)

    @property
    def failed(self) -> list[ShardOutcome]:
        return [s for s in self.shards if s.status in ("failed", "bad_input")]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards if s.status == "ok")

    @property
    def row_status(self) -> dict[str, int]:
        """Rows committed this run per row status (jobs whose output has a status column)."""
        total: dict[str, int] = {}
        for s in self.shards:
            for k, n in s.row_status.items():
                total[k] = total.get(k, 0) + n
        return dict(sorted(total.items()))

    @property
    def rows_not_ok(self) -> dict[str, int]:
        return {k: n for k, n in self.row_status.items() if k != "ok"}

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.unrecorded or self.aborted else 0

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.job}: {self.output}",
            f"  {'shards':<22}{len(self.shards):>8}",
            f"  {'committed this run':<22}{self.count('ok'):>8}",
            f"  {'already committed':<22}{self.count('skipped'):>8}",
            f"  {'failed':<22}{len(self.failed):>8}",
            f"  {'rows this run':<22}{self.rows:>8}",
            *(f"    {'rows ' + k:<20}{n:>8}" for k, n in self.row_status.items()),
            f"  {'seconds':<22}{self.seconds:>8.1f}",
            f"  {'rows/s':<22}{rate:>8.1f}",
        ]
        nodes: dict[str, int] = {}
        for s in self.shards:
            if s.status == "ok":
                key = f"{s.worker.get('node_id', s.worker.get('host', '?'))[:12]} {s.worker.get('device', '')}"
                nodes[key] = nodes.get(key, 0) + 1
        for key, n in sorted(nodes.items()):
            lines.append(f"  shards on {key:<30}{n:>4}")
        for s in self.failed:
            first = (s.error or "").strip().splitlines()
            lines.append(f"  FAILED part-{s.index:05d} after {s.attempts} attempt(s): {first[-1] if first else '?'}")
        if self.failed:
            lines.append(f"  details: {self.output.rstrip('/')}/_errors/")
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.aborted:
            lines.append(f"  ABORTED: {self.aborted}")
        lines.extend(f"  NOT RECORDED: {u}" for u in self.unrecorded)
        bad = self.rows_not_ok
        rows_note = (f" ({sum(bad.values())} rows not ok: "
                     + ", ".join(f"{k} {n}" for k, n in bad.items()) + "; see their status column)") if bad else ""
        lines.append("status: " + ("FAILED" if self.exit_code else "ok") + rows_note)
        return "\n".join(lines)


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
    outcomes = {s.index: ShardOutcome(s.index, "skipped") for s in shards if s.index in committed}
    meta = {
        "job": job, "run_id": run_id, "status": "running", "input": input_url, "output": output_url,
        "started": _iso(started), "config": dataclasses.asdict(worker_config), "spec": spec,
        "runner": dataclasses.asdict(runner), "versions": package_versions(),
    }
    try:
        out.write_job_meta(meta)
    except OSError as exc:
        raise OutputUnusable(f"cannot write {out.url.rstrip('/')}/_job.json: {exc}") from None
    where = ensure_ray(runner.ray_address)
    signal_guard = _sigterm_as_interrupt()  # ray.init installed its own SIGTERM handler: take it back
    signal_guard.__enter__()
    placed = plan_workers(runner, cluster_gpus(), cluster_cpus(), cpu_auto="fill", max_workers=len(todo))
    num_gpus, n_workers = placed.gpus_per_worker, placed.workers
    meta.update(runner=dataclasses.asdict(runner) | {"workers": n_workers, "gpus_per_worker": num_gpus},
                ray={"where": where, "nodes": len(ray.nodes()), "resources": ray.cluster_resources()})
    report = JobReport(job, output_url, [], 0.0, notes=list(notes))
    bar = tqdm(total=len(shards), initial=len(committed), unit="shard", desc=job, disable=not runner.progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        _record(report, "_job.json", lambda: out.write_job_meta(meta))
        if todo:
            options = dict(num_cpus=runner.cpus_per_worker, num_gpus=num_gpus, max_restarts=-1, max_task_retries=0)
            if worker_runtime_env():
                options["runtime_env"] = worker_runtime_env()
            actor_cls = ray.remote(worker_cls).options(**options)
            actors = [actor_cls.remote(worker_config, num_threads=int(runner.cpus_per_worker)) for _ in range(n_workers)]
            try:
                _dispatch(todo, actors, out, output_url, run_id, runner.max_attempts, outcomes, bar, started, report,
                          lease)
            finally:
                for a in actors:
                    ray.kill(a)
    except KeyboardInterrupt:
        bar.close()
        meta.update(status="interrupted", finished=_iso(time.time()), seconds=round(time.time() - started, 3),
                    shards=[dataclasses.asdict(o) for o in outcomes.values()])
        _record(report, "_job.json", lambda: out.write_job_meta(meta))
        raise
    finally:
        signal_guard.__exit__(None, None, None)
    bar.close()
    report.shards = [outcomes.get(s.index, ShardOutcome(s.index, "not_run")) for s in shards]
    report.seconds = time.time() - started
    meta.update(
        status="aborted" if report.aborted else ("failed" if report.failed else "ok"), finished=_iso(time.time()),
        seconds=round(report.seconds, 3),
        counts={"shards": len(shards), "committed": report.count("ok"), "skipped": report.count("skipped"),
                "failed": len(report.failed), "rows": report.rows, "row_status": report.row_status,
                "rows_not_ok": sum(report.rows_not_ok.values()),
                "rows_per_s": round(report.rows / report.seconds, 2) if report.seconds else 0.0},
        notes=report.notes, aborted=report.aborted, unrecorded=list(report.unrecorded),
        shards=[dataclasses.asdict(s) for s in report.shards],
    )
    if not report.aborted:  # after a lost lease another run owns the output: leave its _job.json alone
        _record(report, "_job.json", lambda: out.write_job_meta(meta))
    return report


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


def _dispatch(todo: list[Shard], actors: list, out: JobOutput, output_url: str, run_id: str, max_attempts: int,
              outcomes: dict[int, ShardOutcome], bar: tqdm, started: float, report: JobReport, lease: Any) -> None:
    """Keep every live worker busy until each shard is committed or has failed ``max_attempts`` times.

    A worker whose process died is restarted by Ray (``max_restarts``); it gets no shard until a
    ping with unlimited retries comes back, so a retry never lands on a worker that is still down.
    """
    queue: deque[tuple[Shard, int]] = deque((s, 1) for s in todo)
    idle = deque(actors)
    inflight: dict[ray.ObjectRef, tuple[Shard, int, Any]] = {}
    recovering: dict[ray.ObjectRef, Any] = {}
    rows = 0
    while inflight or (queue and (idle or recovering)):
        if lease.lost.is_set() and not report.aborted:
            report.aborted = "another run took over the lease on the output; no shard was started after that"
        if report.aborted:  # let the shards in flight finish, start no other
            queue.clear()
            if not inflight:
                break
        while queue and idle:
            shard, attempt = queue.popleft()
            _record(report, f"(partial files of part-{shard.index:05d})", lambda: out.clear_leftovers(shard.index))
            actor = idle.popleft()
            inflight[actor.process.remote(ShardTask(shard, output_url, attempt, run_id))] = (shard, attempt, actor)
        [ref], _ = ray.wait(list(inflight) + list(recovering), num_returns=1)
        if ref in recovering:
            actor = recovering.pop(ref)
            try:
                ray.get(ref)
                idle.append(actor)
            except ray.exceptions.RayError as exc:  # gone for good (e.g. its node left and no other fits it)
                bar.write(f"a worker could not be restarted and is dropped: {_last_line(str(exc))}")
            continue
        shard, attempt, actor = inflight.pop(ref)
        try:
            result: ShardResult = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            recovering[actor.info.options(max_task_retries=-1).remote()] = actor
            error = f"worker died while processing the shard (attempt {attempt}): {exc}"
        except ray.exceptions.RayTaskError as exc:
            idle.append(actor)
            error = f"attempt {attempt}: {exc}"
        else:
            idle.append(actor)
            if result.status == "ok":
                outcomes[shard.index] = ShardOutcome(shard.index, "ok", result.rows, result.seconds, attempt,
                                                     worker=result.worker,
                                                     row_status=dict(getattr(result, "row_status", {}) or {}))
                rows += result.rows
            else:
                _fail(out, shard, "bad_input", attempt, result.error, outcomes, result.worker, report)
            bar.update(1)
            bar.set_postfix(rows=rows, rows_per_s=f"{rows / max(time.time() - started, 1e-9):.1f}", refresh=False)
            continue
        if attempt < max_attempts:
            bar.write(f"part-{shard.index:05d}: attempt {attempt} failed, retrying: {_last_line(error)}")
            queue.appendleft((shard, attempt + 1))
        else:
            _fail(out, shard, "failed", attempt, error, outcomes, {}, report)
            bar.update(1)
    for shard, attempt in queue:  # every worker is gone
        _fail(out, shard, "failed", attempt - 1, "no live worker left to run the shard", outcomes, {}, report)


def _fail(out: JobOutput, shard: Shard, status: str, attempts: int, error: str | None,
          outcomes: dict[int, ShardOutcome], worker: dict[str, Any], report: JobReport) -> None:
    outcomes[shard.index] = ShardOutcome(shard.index, status, attempts=attempts, error=error, worker=worker)
    _record(report, f"_errors/part-{shard.index:05d}.json", lambda: out.record_error(
        shard.index, {"input": shard.url, "status": status, "attempts": attempts, "error": error, "worker": worker,
                      "time": _iso(time.time())}))


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")
