"""Does the driver keep up at cluster scale? 100,000 small shards, 32 cheap fake workers on a local Ray
with fake resources: the driver's dispatch rate (shards/s), its memory (RSS) as shards commit, and how
long resume takes to list the 100,000-shard output.

    python bench/driver_scale.py [--shards 100000] [--workers 32]

The input listing is synthetic (``list_shards`` and ``check_input`` are replaced by a list of fake
``Shard``s; listing and checking a real input is the driver's planning, measured in bench/phases.py).
Everything else is the real runner: ``run_shards`` with its lease, ledger, ``_job.json`` and dispatch
loop, and real workers (``ShardWorker.process``) that read and compute nothing but write each shard's
commit marker through ``JobOutput`` on local disk (write, fsync, rename). Ray gets ``--workers`` logical
CPUs, one per fake worker, whatever the machine has.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from dataclasses import dataclass

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402

import dl3d.jobs.runner as runner_mod  # noqa: E402
from dl3d.jobs.ray_env import ensure_ray  # noqa: E402
from dl3d.data import JobOutput, Shard  # noqa: E402
from dl3d.jobs.job_report import ShardLedger  # noqa: E402
from dl3d.jobs.runner import RunnerConfig, run_shards  # noqa: E402
from dl3d.workers.base import ShardWorker  # noqa: E402


@dataclass
class FakeConfig:
    """Nothing: the fake worker does no work."""


class FakeWorker(ShardWorker):
    """Reads and computes nothing, writes no part; ``process`` still commits each shard's marker."""

    config_cls = FakeConfig

    @staticmethod
    def pick_device():
        return "cpu"  # no model: the fake worker never imports torch

    def read_shard(self, task):
        return None

    def compute_shard(self, task, data):
        return None

    def write_shard(self, task, out, result):
        return 1


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--dir", default=None, help="where the fake input and the output go (default: the temp folder; "
                                                 "/dev/shm keeps the disk's file-creation cost out of the workers)")
    args = ap.parse_args()
    marks = sorted({m for m in (max(1, args.shards // 100), 1_000, 10_000, 50_000, 100_000, args.shards)
                    if m <= args.shards})
    seen: dict[int, tuple[float, float]] = {}  # committed shards -> (time, driver RSS MB)
    ok = [0]

    class CountingLedger(ShardLedger):
        def record(self, o):
            super().record(o)
            if o.status == "ok":
                ok[0] += 1
                if ok[0] in marks:
                    seen[ok[0]] = (time.perf_counter(), rss_mb())

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src, dst = f"{tmp}/in", f"{tmp}/out"
        os.makedirs(src)
        with open(f"{src}/_dataset.json", "w") as f:
            f.write('{"kind": "fake", "num_shards": %d}\n' % args.shards)
        shards = [Shard(i, f"{src}/part-{i:05d}.parquet") for i in range(args.shards)]
        runner_mod.list_shards = lambda url: shards
        runner_mod.check_input = lambda url, s: {"rows": 0, "unreadable": 0, "declared": None}
        runner_mod.ShardLedger = CountingLedger

        t_ray = time.perf_counter()
        ensure_ray(num_cpus=args.workers)
        print(f"local Ray with {args.workers} logical CPUs on {os.cpu_count()} cores: {time.perf_counter() - t_ray:.1f} s; "
              f"driver RSS {rss_mb():.0f} MB with the {args.shards} shards listed")
        peak = [0.0]
        stop = threading.Event()

        def watch():
            while not stop.wait(0.2):
                peak[0] = max(peak[0], rss_mb())

        threading.Thread(target=watch, daemon=True).start()
        t0 = time.perf_counter()
        report = run_shards("driver scale", FakeWorker, FakeConfig(), src, dst,
                            RunnerConfig(workers=args.workers, cpus_per_worker=1, progress=False))
        wall = time.perf_counter() - t0
        stop.set()
        assert report.exit_code == 0 and report.count("ok") == args.shards, report.summary()
        first = min(w.get("ready_s", 0.0) for w in report.workers)
        print(f"{args.shards} shards on {len(report.workers)} workers in {wall:.1f} s (workers ready after "
              f"{first:.1f} s)")
        print(f"  {'committed':>10}{'seconds':>10}{'driver RSS MB':>15}")
        for m in marks:
            t, rss = seen[m]
            print(f"  {m:>10}{t - t0:>10.1f}{rss:>15.0f}")
        lo, hi = marks[1 if len(marks) > 2 else 0], marks[-1]  # from 1,000 committed on: the workers are up
        rate = (hi - lo) / (seen[hi][0] - seen[lo][0])
        print(f"dispatch rate from {lo} to {hi} committed: {rate:.0f} shards/s "
              f"(target >= 1000 with 32 workers); peak driver RSS {peak[0]:.0f} MB")
        per_shard = report.timings.get("dispatch", 0.0) / args.shards
        print(f"driver time: {report.timings}: its own work {per_shard * 1000:.2f} ms per shard, a ceiling of "
              f"{1 / per_shard:.0f} shards/s for one driver core (the rest of the time it waited for workers)")
        size = os.path.getsize(f"{dst}/_job.json")
        print(f"_job.json: {size / 1024:.1f} KiB")

        t = time.perf_counter()
        n = len(JobOutput(dst).committed())
        print(f"resume listing: JobOutput.committed() found {n} markers in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        again = run_shards("driver scale", FakeWorker, FakeConfig(), src, dst,
                           RunnerConfig(workers=args.workers, cpus_per_worker=1, progress=False))
        assert again.count("skipped") == args.shards
        print(f"resume run (every shard already committed, nothing dispatched): {time.perf_counter() - t:.2f} s")
        ray.shutdown()


if __name__ == "__main__":
    main()
