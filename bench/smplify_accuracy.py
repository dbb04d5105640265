"""SMPLify accuracy on a larger synthetic set: every preset, and the temporal term against per-frame fits.

    python bench/smplify_accuracy.py [--videos 16] [--frames 60] [--noise-px 2] [--drop 0.1]

Synthetic walking videos (procedural body model, NOT SMPL; Gaussian pixel noise, dropped keypoints),
fitted in one batch per preset. Prints per preset: PA-MPJPE and MPJPE (mm, rows with status ok),
median 2D error (px, against the noisy observations), acceleration error (mm/frame², mean over
videos) and frames/s. The tests assert the same figures on a small set (tests/fitting).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dl3d.body import make_procedural_body_model
from dl3d.body.joints_kernel import build_points_kernel
from dl3d.fitting.smplify import SMPLIFY_PRESETS, fit_smplify
from dl3d.metrics import acceleration_error, mpjpe, pa_mpjpe
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, stack_videos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--noise-px", type=float, default=2.0)
    ap.add_argument("--drop", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    arrays = make_procedural_body_model()
    kernel = build_points_kernel(arrays)
    videos = [make_keypoint_video(arrays, KeypointVideoSpec(frames=args.frames, noise_px=args.noise_px,
                                                            drop_fraction=args.drop, seed=1000 + v))
              for v in range(args.videos)]
    b = stack_videos(videos)
    print(f"{args.videos} videos x {args.frames} frames, {args.noise_px} px noise, {args.drop:.0%} keypoints dropped, "
          f"{args.threads} torch thread(s)")
    print(f"  {'preset':<10}{'PA-MPJPE mm':>13}{'MPJPE mm':>10}{'2D px med':>11}{'accel mm/f²':>13}{'frames/s':>10}")
    for name in ("default", "fast", "per-frame"):
        t0 = time.perf_counter()
        r = fit_smplify(kernel, b["keypoints"], "body25", b["track_index"], b["frame"], b["focal"],
                        b["principal_point"], SMPLIFY_PRESETS[name])
        seconds = time.perf_counter() - t0
        ok = r.status == "ok"
        pa = float(np.mean(pa_mpjpe(r.joints3d[ok], b["joints3d"][ok]))) * 1000
        mp = float(np.mean(mpjpe(r.joints3d[ok], b["joints3d"][ok]))) * 1000
        accel = np.mean([acceleration_error(r.joints3d[b["track_index"] == t], b["joints3d"][b["track_index"] == t])
                         for t in range(args.videos)]) * 1000
        print(f"  {name:<10}{pa:>13.1f}{mp:>10.1f}{np.nanmedian(r.reprojection_error_px[ok]):>11.2f}"
              f"{accel:>13.2f}{len(ok) / seconds:>10.0f}")


if __name__ == "__main__":
    main()
