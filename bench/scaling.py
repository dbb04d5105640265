"""The 1-worker vs N-worker run that the throughput benches share: the same job over the same input, timed
end to end (worker start included), then the ratio."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from dl3d.jobs.runner import RunnerConfig, run_shards


def worker_scaling(worker: type, cfg: Any, input_url: str, out_prefix: str, workers: int, unit: str, *,
                   count: Callable[[Any], int] = lambda report: report.rows,
                   detail: Callable[[Any], str] = lambda report: "", digits: int = 0) -> dict[int, float]:
    """Run the job with 1 then ``workers`` workers (one CPU each) into ``out_prefix-N``; print each run's
    rate in ``unit``/s (``count(report)`` units) and the ratio; return ``{workers: rate}``."""
    rates: dict[int, float] = {}
    for n in (1, workers):
        t0 = time.perf_counter()
        report = run_shards("bench", worker, cfg, input_url, f"{out_prefix}-{n}",
                            RunnerConfig(workers=n, cpus_per_worker=1, progress=False))
        seconds = time.perf_counter() - t0
        assert report.exit_code == 0, report.summary()
        rates[n] = count(report) / seconds
        print(f"{n} worker(s): {count(report)} {unit}{detail(report)} in {seconds:.2f} s = "
              f"{rates[n]:.{digits}f} {unit}/s (incl. worker start)")
    print(f"ratio {workers} workers / 1 worker: {rates[workers] / rates[1]:.2f}x "
          f"(ideal {workers:.0f}x on {os.cpu_count()} cores)")
    return rates
