"""Export throughput, 1 worker vs N workers, in one run: frames/s for each and the ratio, end to end
(worker start and model load included; Ray is started before both runs) and after the first worker
was ready, with the workers' idle share.

    python bench/export_throughput.py [--frames 8000] [--shards 16] [--workers 2] [--vertices] [--meshes none|ply|obj]

Runs on the embedded local Ray (or --ray-address). Each worker gets one CPU (one torch thread), so
on an N-core box the ideal ratio is N.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402

from dl3d.jobs.ray_env import ensure_ray  # noqa: E402
from dl3d.body import make_procedural_body_model, write_body_model  # noqa: E402
from scaling import worker_scaling  # noqa: E402  (bench/scaling.py)
from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset  # noqa: E402
from dl3d.workers.smpl_export import SmplExportConfig, SmplExportWorker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=8000, help="total frames")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="workers in the second run")
    ap.add_argument("--vertices", action="store_true", help="also store vertices (heavier output)")
    ap.add_argument("--meshes", default="none", choices=("none", "ply", "obj"), help="one mesh file per frame")
    ap.add_argument("--ray-address", default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = str(write_body_model(make_procedural_body_model(), f"{tmp}/body"))
        params = f"{tmp}/params"
        write_smpl_params_dataset(params, SmplParamsSpec(videos=args.shards, frames=args.frames // args.shards,
                                                         shards=args.shards))
        ensure_ray(args.ray_address, num_cpus=max(args.workers, 1))
        cfg = SmplExportConfig(model=model, vertices=args.vertices, meshes=args.meshes)
        worker_scaling(SmplExportWorker, cfg, params, f"{tmp}/out", args.workers, "frames")
        ray.shutdown()


if __name__ == "__main__":
    main()
