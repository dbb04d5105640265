"""What the throughput benches share: the 1-worker vs N-worker run (the same job over the same input, timed
end to end, worker start included, then the ratio), the inputs of the SMPL jobs, and the table of where
a run's time went (``report.timings`` and ``report.workers``, from the runner)."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from dl3d.jobs.runner import RunnerConfig, run_shards
from dl3d.workers.base import PHASES


def worker_scaling(worker: type, cfg: Any, input_url: str, out_prefix: str, workers: int, unit: str, *,
                   count: Callable[[Any], int] = lambda report: report.rows,
                   detail: Callable[[Any], str] = lambda report: "", digits: int = 0,
                   warmup: bool = True) -> dict[int, float]:
    """Run the job with 1 then ``workers`` workers (one CPU each) into ``out_prefix-N``; print each run's
    rate in ``unit``/s (``count(report)`` units), the share of worker start in it, and the ratio; return
    ``{workers: rate}``.

    With ``warmup`` the job first runs once, untimed, with ``workers`` workers into ``out_prefix-warmup``:
    otherwise the 1-worker run, going first, alone pays the cold costs of the machine (the OS page cache of
    the packages, the model and the input; Ray's first worker processes) and the ratio comes out above
    the ideal."""
    rates: dict[int, float] = {}
    steady: dict[int, float] = {}
    if warmup:
        t0 = time.perf_counter()
        report = run_shards("bench", worker, cfg, input_url, f"{out_prefix}-warmup",
                            RunnerConfig(workers=workers, cpus_per_worker=1, progress=False))
        assert report.exit_code == 0, report.summary()
        print(f"warm-up run ({workers} workers, not counted): {time.perf_counter() - t0:.2f} s")
    for n in (1, workers):
        t0 = time.perf_counter()
        report = run_shards("bench", worker, cfg, input_url, f"{out_prefix}-{n}",
                            RunnerConfig(workers=n, cpus_per_worker=1, progress=False))
        seconds = time.perf_counter() - t0
        assert report.exit_code == 0, report.summary()
        rates[n] = count(report) / seconds
        start = min((w.get("ready_s", 0.0) for w in report.workers), default=0.0)
        steady[n] = count(report) / max(seconds - start, 1e-9)
        print(f"{n} worker(s): {count(report)} {unit}{detail(report)} in {seconds:.2f} s = "
              f"{rates[n]:.{digits}f} {unit}/s (incl. worker start: first ready after {start:.1f} s, "
              f"{100 * start / seconds:.0f}% of the run; after it {steady[n]:.{digits}f} {unit}/s; "
              f"workers idle {idle_share(report):.1%})")
    print(f"ratio {workers} workers / 1 worker: {rates[workers] / rates[1]:.2f}x end to end, "
          f"{steady[workers] / steady[1]:.2f}x after worker start (ideal {workers:.0f}x on {os.cpu_count()} cores)")
    return rates


def idle_share(report) -> float:
    """Share of the workers' time after they were ready with no stage running (between shards and at the tail)."""
    idle = sum(w.get("idle_s", 0.0) + w.get("tail_s", 0.0) for w in report.workers)
    span = sum(report.seconds - w.get("ready_s", 0.0) for w in report.workers)
    return idle / span if span > 0 else 0.0


def phase_table(report) -> str:
    """Where the run's time went: per worker phase the sum over shards, the mean per worker and the share of
    the workers' wall time; the driver's own phases; then each worker's start, idle and tail seconds."""
    wall, n = report.seconds, max(len(report.workers), 1)
    lines = [f"{report.job}: {report.rows} rows, {len(report.shards)} shards, {len(report.workers)} worker(s), "
             f"{wall:.2f} s wall",
             f"  {'phase':<34}{'sum (s)':>10}{'per worker':>12}{'share':>8}"]
    start = sum(w.get("start_s", 0.0) for w in report.workers)
    rows = [("worker start + model load", start)]
    rows += [(f"{p}" + (" (encode + write outputs)" if p == "write" else ""),
              sum(w["phases"].get(p, 0.0) for w in report.workers)) for p in PHASES]
    rows.append(("waiting for the other shard's stage", sum(w["phases"].get("wait", 0.0) for w in report.workers)))
    rows.append(("idle after ready (no stage running)", sum(w.get("idle_s", 0.0) for w in report.workers)))
    rows.append(("idle at the tail (job not done)", sum(w.get("tail_s", 0.0) for w in report.workers)))
    for name, s in rows:
        lines.append(f"  {name:<34}{s:>10.2f}{s / n:>12.2f}{s / (n * wall):>8.1%}")
    lines.append(f"  {'driver':<34}{'(s)':>10}{'':>12}{'share':>8}")
    for name, s in report.timings.items():
        label = {"plan": "list, check input, lease", "ray": "start/join Ray, placement",
                 "dispatch": "dispatch loop (own work)", "wait": "waiting in ray.wait",
                 "finish": "stop workers, _job.json"}.get(name, name)
        lines.append(f"  {label:<34}{s:>10.2f}{'':>12}{s / wall:>8.1%}")
    for w in report.workers:
        lines.append(f"  worker pid {w.get('pid')}: {w['shards']} shards, start {w.get('start_s', 0):.2f} s "
                     f"(of it __init__: torch import and model load {w.get('setup_s', 0):.2f} s), busy {w.get('busy_s', 0):.2f} s, "
                     f"idle {w.get('idle_s', 0):.2f} s, tail {w.get('tail_s', 0):.2f} s")
    return "\n".join(lines)


def make_body_model(root: str) -> str:
    """The procedural body model (SMPL file format, NOT SMPL) under ``root``; returns its path."""
    from dl3d.body import make_procedural_body_model, write_body_model

    return str(write_body_model(make_procedural_body_model(), f"{root}/body"))


def make_fit_input(root: str, model: str, videos: int, frames: int, videos_per_shard: int,
                   seed: int = 0) -> tuple[str, str]:
    """Synthetic walking videos as OpenPose JSON, ingested into a keypoints2d dataset (``videos_per_shard``
    whole videos per shard), as `make demo` does; returns (keypoints URL, truth URL)."""
    from dl3d.body import read_body_model_arrays
    from dl3d.ingest import IngestConfig, ingest_openpose
    from dl3d.synthetic.smpl_video_dataset import SmplVideoDatasetSpec, write_smpl_video_dataset

    write_smpl_video_dataset(f"{root}/videos", read_body_model_arrays(model),
                             SmplVideoDatasetSpec(videos=videos, frames=frames, seed=seed))
    ingest_openpose(f"{root}/videos/openpose", f"{root}/keypoints",
                    IngestConfig(videos_per_shard=videos_per_shard, image_width=1280, image_height=720,
                                 focal_length=1000.0))
    return f"{root}/keypoints", f"{root}/videos/truth"
