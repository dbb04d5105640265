"""Where the time of a batch job goes: `smpl fit` (default preset) and `smpl export` through the runner on
generated data, and per phase (worker start and model load, read, compute, encode + write, commit, the
driver's own loop) the sum over shards, the mean per worker and the share of wall time, then each
worker's idle seconds.

    python bench/phases.py [--workers 2] [--fit-videos 16 --fit-frames 125] [--export-frames 8000] [--meshes none|ply]
                           [--compare]

With ``--compare`` each job also runs the way the runner did before issue 11 (one shard per worker at a
time, read, compute and write in turn) and the two runs' rows/s after worker start and idle shares
are printed side by side.

Runs on the embedded local Ray (one CPU per worker). Idle time = seconds after a worker was ready in which
none of its stages ran (between shards), and at the tail (its last shard done, the job not yet).
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402

from scaling import idle_share, make_body_model, make_fit_input, phase_table  # noqa: E402  (bench/scaling.py)
import dl3d.jobs.runner as runner_mod  # noqa: E402
from dl3d.jobs.ray_env import ensure_ray  # noqa: E402
from dl3d.jobs.runner import RunnerConfig, run_shards  # noqa: E402
from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset  # noqa: E402
from dl3d.workers.smpl_config import SmplExportConfig, SmplFitConfig  # noqa: E402
from dl3d.workers.smpl_export import SmplExportWorker  # noqa: E402
from dl3d.workers.smpl_fit import SmplFitWorker  # noqa: E402


def steady_rate(report) -> float:
    """Rows per second after the first worker was ready."""
    start = min((w.get("ready_s", 0.0) for w in report.workers), default=0.0)
    return report.rows / max(report.seconds - start, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fit-videos", type=int, default=16)
    ap.add_argument("--fit-frames", type=int, default=125, help="frames per video of the fit's input")
    ap.add_argument("--videos-per-shard", type=int, default=2)
    ap.add_argument("--export-frames", type=int, default=8000)
    ap.add_argument("--export-shards", type=int, default=16)
    ap.add_argument("--meshes", default="none", choices=("none", "ply", "obj"), help="mesh files for both jobs")
    ap.add_argument("--compare", action="store_true", help="also run one shard per worker at a time, unpipelined")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = make_body_model(tmp)
        keypoints, _ = make_fit_input(f"{tmp}/fit-in", model, args.fit_videos, args.fit_frames, args.videos_per_shard)
        params = f"{tmp}/params"
        write_smpl_params_dataset(params, SmplParamsSpec(videos=args.export_shards,
                                                         frames=args.export_frames // args.export_shards,
                                                         shards=args.export_shards))
        ensure_ray(num_cpus=max(args.workers, 1))
        runner = RunnerConfig(workers=args.workers, cpus_per_worker=1, progress=False)
        for name, worker, cfg, src in (
                ("smpl fit (default preset)", SmplFitWorker, SmplFitConfig(model=model, meshes=args.meshes), keypoints),
                ("smpl export", SmplExportWorker, SmplExportConfig(model=model, meshes=args.meshes), params)):
            report = run_shards(name, worker, cfg, src, f"{tmp}/out-{worker.__name__}", runner)
            assert report.exit_code == 0, report.summary()
            print(phase_table(report))
            if args.compare:
                serial = type(f"Serial{worker.__name__}", (worker,), {"staged": classmethod(lambda cls: False)})
                runner_mod.IN_FLIGHT_PER_WORKER = 1
                try:
                    before = run_shards(name, serial, cfg, src, f"{tmp}/out-serial-{worker.__name__}", runner)
                finally:
                    runner_mod.IN_FLIGHT_PER_WORKER = 2
                assert before.exit_code == 0, before.summary()
                print(f"  one shard per worker at a time: {steady_rate(before):.0f} rows/s after worker start, "
                      f"workers idle {idle_share(before):.1%}; pipelined: {steady_rate(report):.0f} rows/s, "
                      f"idle {idle_share(report):.1%} ({steady_rate(report) / steady_rate(before):.2f}x)")
            print()
        ray.shutdown()


if __name__ == "__main__":
    main()
