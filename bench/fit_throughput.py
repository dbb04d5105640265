"""`smpl fit` throughput through the CLI, 1 worker vs N workers, in one run: rows/s for each (start-up
included: the `dl3d` process, Ray, the workers and their model load), the ratio, and PA-MPJPE against
the truth (computed as `dl3d smpl evaluate` does).

    python bench/fit_throughput.py [--videos 32] [--frames 250] [--videos-per-shard 2] [--workers 2] [--preset default]
                                   [--rounds 1]

The input is `make demo`'s kind: synthetic walking videos (procedural body model, NOT SMPL) as OpenPose
JSON, ingested into a keypoints2d dataset. Each run is `dl3d smpl fit ... --workers N --no-progress`
on its own embedded local Ray; each worker gets one CPU (one torch thread). Besides the end-to-end ratio
it prints the steady ratio (rows over the seconds after the first worker was ready) and, from the two
runs' start-up and per-row seconds, how many rows a job needs for the end-to-end ratio to reach 1.85x.

With ``--rounds R`` the pair of runs is repeated R times on the same input, in alternating order (1 worker
first, then N workers first, ...), and the ratios of every round are printed with their median: on a
shared machine whose speed drifts between runs by more than the effect measured, one round says little.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scaling import make_body_model, make_fit_input  # bench/scaling.py


def run_fit(keypoints: str, out: str, model: str, workers: int, preset: str) -> dict:
    cmd = [str(Path(sys.executable).parent / "dl3d"), "smpl", "fit", "--input", keypoints, "--output", out,
           "--model", model, "--preset", preset, "--workers", str(workers), "--no-progress"]
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    job = json.loads(Path(out, "_job.json").read_text())
    ready = min(w.get("ready_s", 0.0) for w in job["workers"])
    start = wall - job["seconds"] + ready  # the dl3d process up to its first ready worker, and its exit
    idle = sum(w.get("idle_s", 0.0) + w.get("tail_s", 0.0) for w in job["workers"])
    span = sum(job["seconds"] - w.get("ready_s", 0.0) for w in job["workers"])
    t = job["timings"]
    fixed = (f"the dl3d process outside the job (imports, exit, ray.shutdown) {wall - job['seconds']:.1f} s, plan "
             f"{t.get('plan', 0):.2f} s, Ray {t.get('ray', 0):.2f} s, then workers ready after "
             f"{ready - t.get('plan', 0) - t.get('ray', 0):.2f} s")
    return {"wall": wall, "rows": job["counts"]["rows"], "start": start, "steady": wall - start,
            "idle": idle / span if span > 0 else 0.0, "fixed": fixed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=32)
    ap.add_argument("--frames", type=int, default=250, help="frames per video")
    ap.add_argument("--videos-per-shard", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="workers in the second run")
    ap.add_argument("--preset", default="default", choices=("default", "fast", "per-frame"))
    ap.add_argument("--rounds", type=int, default=1, help="repeat the pair of runs, alternating their order")
    args = ap.parse_args()
    if args.workers < 2 or args.rounds < 1:
        ap.error("--workers must be 2 or more and --rounds 1 or more")

    from dl3d.fitting.evaluation import evaluate_fit

    with tempfile.TemporaryDirectory() as tmp:
        model = make_body_model(tmp)
        keypoints, truth = make_fit_input(f"{tmp}/in", model, args.videos, args.frames, args.videos_per_shard)
        ratios = []
        for round_ in range(args.rounds):
            if args.rounds > 1:
                print(f"round {round_ + 1} of {args.rounds}")
            runs = {}
            for n in ((1, args.workers) if round_ % 2 == 0 else (args.workers, 1)):
                out = f"{tmp}/out-{round_}-{n}"
                r = runs[n] = run_fit(keypoints, out, model, n, args.preset)
                err = evaluate_fit(out, truth)
                print(f"{n} worker(s): {r['rows']} rows in {r['wall']:.1f} s = {r['rows'] / r['wall']:.0f} rows/s "
                      f"through the CLI (start-up to the first ready worker and exit {r['start']:.1f} s; in between "
                      f"{r['rows'] / r['steady']:.0f} rows/s; workers idle {r['idle']:.1%}); "
                      f"PA-MPJPE {err['pa_mpjpe_mm']:.1f} mm over {err['rows_ok']} ok rows\n  start-up and exit: "
                      f"{r['fixed']}", flush=True)
                shutil.rmtree(out)
            ratios.append(report_ratio(runs[1], runs[args.workers], args.workers))
        if args.rounds > 1:
            ends, steadies = [r[0] for r in ratios], [r[1] for r in ratios]
            print(f"{args.rounds} rounds: end to end {', '.join(f'{e:.2f}x' for e in ends)} (median "
                  f"{statistics.median(ends):.2f}x); steady {', '.join(f'{s:.2f}x' for s in steadies)} (median "
                  f"{statistics.median(steadies):.2f}x)")


def report_ratio(one: dict, many: dict, workers: int) -> tuple[float, float]:
    """Print the end-to-end and steady ratios of one round and the job size at which the end-to-end ratio
    would reach 1.85x at these rates; returns (end to end, steady)."""
    end, steady = one["wall"] / many["wall"], one["steady"] / many["steady"]
    print(f"ratio {workers} workers / 1 worker: {end:.2f}x end to end, {steady:.2f}x after start-up "
          f"(ideal {workers}x on {os.cpu_count()} cores)")
    per_row_1, per_row_n = one["steady"] / one["rows"], many["steady"] / many["rows"]
    if per_row_1 > 1.85 * per_row_n:
        rows = (1.85 * many["start"] - one["start"]) / (per_row_1 - 1.85 * per_row_n)
        print(f"end to end reaches 1.85x from about {max(rows, 0):.0f} rows per job at these rates "
              f"(start-up {one['start']:.1f} s / {many['start']:.1f} s)")
    else:
        print("after start-up the ratio is below 1.85x: no job size reaches it end to end")
    return end, steady


if __name__ == "__main__":
    main()
