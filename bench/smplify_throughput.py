"""SMPLify throughput: the same fit through smplx's full SMPL forward and through dl3d's kernel.

One process, the same synthetic frames (procedural body model, NOT SMPL; 2 px noise, 10 % dropped
keypoints), the same ``SmplifyConfig`` and stage schedule; only the body model differs:

- baseline: ``smplx.SMPL`` built from the same arrays, wrapped so that each step runs smplx's full
  forward (6890 vertices) and selects the same 24 joints + 11 keypoint vertices;
- dl3d: ``build_points_kernel`` (joints and keypoint vertices only).

Prints frames/s of both, their ratio, and PA-MPJPE (mm) of both against the ground truth, for each
torch thread count in ``--threads`` (default: 1, as a Ray worker with ``num_cpus=1`` runs, and
torch's default of one thread per core). The two paths run in ``--rounds`` interleaved rounds and
each keeps its best wall time (a shared, noisy machine then favours neither); process CPU seconds
and the load average are printed too. The baseline may run on the first ``--baseline-videos``
videos only; dl3d is then also timed on those same frames, so the ratio always compares equal work.

    python bench/smplify_throughput.py [--videos 4] [--frames 64] [--preset fast] [--rounds 3] [--threads 1,0]

``--rev REV`` compares instead this checkout's fit with the fit of git revision REV (its ``dl3d/``
exported by ``git archive`` to a temporary folder) for every preset in ``--presets``: each round
runs one child process per side, alternating, on the same frames (written once, by this checkout),
one torch thread, and each side keeps its best time; prints frames/s (wall and CPU), PA-MPJPE and
the ratio per preset. Shard-like frames: the default preset's schedule before/after the fused step
(issue 11) was measured with

    python bench/smplify_throughput.py --rev adc17bb --presets default,fast --videos 2 --frames 250 --rounds 5
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import smplx  # noqa: E402
from smplx.utils import Struct  # noqa: E402

from dl3d.body import make_procedural_body_model  # noqa: E402
from dl3d.body.joints_kernel import PointsOutput, build_points_kernel  # noqa: E402
from dl3d.fitting import SMPLIFY_PRESETS, FitResult, fit_smplify  # noqa: E402
from dl3d.metrics import pa_mpjpe  # noqa: E402
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, stack_videos  # noqa: E402


class SmplxPoints(nn.Module):
    """smplx's full SMPL forward behind the kernel's interface (the baseline body model)."""

    def __init__(self, model: smplx.SMPL) -> None:
        super().__init__()
        self.model = model
        self.num_betas = int(model.num_betas)

    def forward(self, betas: Tensor, global_orient: Tensor, body_pose: Tensor,
                transl: Tensor | None = None) -> PointsOutput:
        n = global_orient.shape[0]
        out = self.model(betas=betas.expand(n, -1), global_orient=global_orient, body_pose=body_pose, transl=transl)
        return PointsOutput(joints=out.joints[:, :24], points=out.joints[:, 24:35])

    def smplx_layout(self, out: PointsOutput) -> Tensor:
        return torch.cat([out.joints, out.points], dim=1)


def plain_arrays(arrays: dict) -> dict:
    out = {}
    for key, val in arrays.items():
        val = np.asarray(val.toarray() if hasattr(val, "toarray") else val)
        out[key] = val.astype(np.float32) if val.dtype.kind == "f" else val
    return out


def timed_fit(kernel: nn.Module, batch: dict, cfg) -> tuple[float, float, FitResult]:
    """Wall seconds, process CPU seconds and the result of one fit."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit_smplify(kernel, batch["keypoints"], "body25", batch["track_index"], batch["frame"],
                         batch["focal"], batch["principal_point"], cfg)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def measure(models: dict[str, nn.Module], batches: dict[str, dict], cfg, rounds: int) -> dict[str, tuple]:
    """Best (wall, cpu, result) per path over interleaved rounds, plus the load averages seen."""
    runs = {"baseline": ("baseline", "sub"), "dl3d_sub": ("dl3d", "sub")}
    if len(batches["full"]["frame"]) != len(batches["sub"]["frame"]):
        runs["dl3d_full"] = ("dl3d", "full")
    warmup = replace(cfg, stage_iters=(1,) * len(cfg.stage_iters), refine_iters=1, camera_iters=1)
    for model in models.values():
        timed_fit(model, batches["sub"], warmup)
    best: dict[str, tuple] = {}
    loads = []
    for _ in range(rounds):
        for name, (model, which) in runs.items():
            wall, cpu, result = timed_fit(models[model], batches[which], cfg)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu, result)
            loads.append(os.getloadavg()[0])
    best["loads"] = (min(loads), max(loads))
    return best


def report(best: dict[str, tuple], batches: dict[str, dict]) -> None:
    def pa(name: str) -> float:
        truth = batches["full" if name == "dl3d_full" else "sub"]["joints3d"]
        return float(np.mean(pa_mpjpe(best[name][2].joints3d, truth)) * 1000)

    frames = {"baseline": len(batches["sub"]["frame"]), "dl3d_sub": len(batches["sub"]["frame"]),
              "dl3d_full": len(batches["full"]["frame"])}
    labels = {"baseline": "baseline: smplx full forward", "dl3d_sub": "dl3d kernel, same frames",
              "dl3d_full": "dl3d kernel, all frames"}
    print(f"  {'path':<30}{'frames':>7}{'wall s':>9}{'frames/s':>10}{'cpu s':>8}{'cpu frames/s':>14}"
          f"{'PA-MPJPE mm':>13}")
    for name in [k for k in ("baseline", "dl3d_sub", "dl3d_full") if k in best]:
        wall, cpu, _ = best[name]
        print(f"  {labels[name]:<30}{frames[name]:>7}{wall:>9.2f}{frames[name] / wall:>10.1f}{cpu:>8.2f}"
              f"{frames[name] / cpu:>14.1f}{pa(name):>13.1f}")
    if "dl3d_full" in best:
        print(f"  (baseline shortened to the first {frames['baseline']} frames; the ratio compares those frames)")
    print(f"  ratio dl3d / baseline frames/s: {best['baseline'][0] / best['dl3d_sub'][0]:.1f}x wall "
          f"({best['baseline'][1] / best['dl3d_sub'][1]:.1f}x cpu); PA-MPJPE difference "
          f"{pa('dl3d_sub') - pa('baseline'):+.2f} mm; {best['dl3d_sub'][2].stats.get('row_iterations')} "
          f"row-iterations per fit; load average {best['loads'][0]:.1f}-{best['loads'][1]:.1f} "
          f"on {os.cpu_count()} cores")


_CHILD = """
import json, pickle, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
torch.set_num_threads(1)
from dl3d.body.joints_kernel import build_points_kernel
from dl3d.fitting import SMPLIFY_PRESETS, fit_smplify
from dl3d.metrics import pa_mpjpe
with open(sys.argv[2], "rb") as f:
    arrays, b = pickle.load(f)
kernel = build_points_kernel(arrays)
cfg = SMPLIFY_PRESETS[sys.argv[3]]
fit = lambda: fit_smplify(kernel, b["keypoints"], "body25", b["track_index"], b["frame"], b["focal"],
                          b["principal_point"], cfg)
fit()
best = None
for _ in range(int(sys.argv[4])):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    best = (wall, cpu) if best is None or wall < best[0] else best
pa = float(np.mean(pa_mpjpe(result.joints3d, b["joints3d"])) * 1000)
print(json.dumps({"wall": best[0], "cpu": best[1], "pa_mm": pa, "dl3d": sys.modules["dl3d"].__file__}))
"""


def compare_revisions(rev: str, presets: list[str], arrays: dict, batch: dict, rounds: int, reps: int) -> None:
    """This checkout against git revision ``rev``, one child process per side and round (alternating)."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "rev"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(root), "archive", rev, "dl3d"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        data = Path(tmp) / "batch.pkl"
        data.write_bytes(pickle.dumps((arrays, batch)))
        sides = {rev: str(old), "this checkout": str(root)}
        frames = len(batch["frame"])
        print(f"  {'preset':<10}{'code':<15}{'frames/s':>10}{'cpu frames/s':>14}{'PA-MPJPE mm':>13}")
        for preset in presets:
            best: dict[str, dict] = {}
            for _ in range(rounds):
                for name, path in sides.items():
                    out = subprocess.run([sys.executable, "-c", _CHILD, path, str(data), preset, str(reps)],
                                         check=True, capture_output=True, text=True)
                    got = json.loads(out.stdout.strip().splitlines()[-1])
                    assert got["dl3d"].startswith(path), f"{name} imported {got['dl3d']}"
                    if name not in best or got["wall"] < best[name]["wall"]:
                        best[name] = got
            for name in sides:
                r = best[name]
                print(f"  {preset:<10}{name:<15}{frames / r['wall']:>10.1f}{frames / r['cpu']:>14.1f}{r['pa_mm']:>13.2f}")
            new, ref = best["this checkout"], best[rev]
            print(f"  {preset}: this checkout / {rev} frames/s: {ref['wall'] / new['wall']:.2f}x wall "
                  f"({ref['cpu'] / new['cpu']:.2f}x cpu); PA-MPJPE {new['pa_mm'] - ref['pa_mm']:+.2f} mm; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--preset", default="fast", choices=sorted(SMPLIFY_PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a SmplifyConfig field of the preset, e.g. --set keyframe_stride=2")
    parser.add_argument("--baseline-videos", type=int, default=0, help="videos the baseline fits (0: all)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each path keeps its best time")
    parser.add_argument("--threads", default="1,0",
                        help="comma-separated torch thread counts to measure (0: torch's default, one per core)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rev", default="", help="compare this checkout with this git revision instead of smplx")
    parser.add_argument("--presets", default="default,fast", help="--rev: comma-separated presets to compare")
    parser.add_argument("--reps", type=int, default=1, help="--rev: timed fits per child process (best kept)")
    args = parser.parse_args()
    device = torch.device(args.device)
    arrays = plain_arrays(make_procedural_body_model(num_betas=10, seed=0))
    models = {"dl3d": build_points_kernel(arrays).to(device),
              "baseline": SmplxPoints(smplx.SMPL("", data_struct=Struct(**arrays), num_betas=10)).to(device)}
    overrides = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in args.set)}
    cfg = replace(SMPLIFY_PRESETS[args.preset], **overrides)
    videos = [make_keypoint_video(arrays, KeypointVideoSpec(frames=args.frames, seed=s)) for s in range(args.videos)]
    batches = {"full": stack_videos(videos), "sub": stack_videos(videos[:args.baseline_videos or args.videos])}
    if args.rev:
        print(f"torch {torch.__version__}; procedural body model (NOT SMPL); {args.videos} videos x {args.frames} "
              f"frames in one batch; 1 torch thread; {args.rounds} rounds x {args.reps} fits, best kept")
        compare_revisions(args.rev, args.presets.split(","), arrays, batches["full"], args.rounds, args.reps)
        return
    print(f"torch {torch.__version__}, smplx 0.1.28, device {device}; procedural body model (NOT SMPL); "
          f"{args.videos} videos x {args.frames} frames; preset {args.preset!r} {' '.join(args.set)}: stages "
          f"{cfg.stage_iters}, camera {cfg.camera_iters}, warm start {cfg.warm_start} (keyframe stride "
          f"{cfg.keyframe_stride}, min rows {cfg.keyframe_min_rows}, refine {cfg.refine_iters}), temporal "
          f"weight {cfg.temporal_weight:g}")
    default_threads = torch.get_num_threads()
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads or default_threads)
        note = " (one fitting process per core, as Ray workers with num_cpus=1 run)" if threads == 1 else ""
        print(f"torch threads: {torch.get_num_threads()}{note}")
        report(measure(models, batches, cfg, args.rounds), batches)


if __name__ == "__main__":
    main()
