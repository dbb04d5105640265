"""2D pose detection throughput (BlazePose), 1 worker vs N workers, in one run: frames/s and the ratio.

    python bench/pose_detect.py [--videos 4] [--frames 48] [--workers 2] [--width 320 --height 240]

The clip is dl3d's procedural body walking, rendered once with pytorch3d and copied to every video
(BlazePose finds it in every frame, so the detector does its full work: person detection once,
then landmark tracking). Rates include decoding and worker start; also printed: one detector in
this process without Ray, the baseline the worker rates are compared with. Each worker gets one
CPU slot; MediaPipe runs its own XNNPACK threads, so on a loaded or 2-core box the ratio stays
well under N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402

from dl3d.jobs.ray_env import ensure_ray  # noqa: E402
from dl3d.body import make_procedural_body_model  # noqa: E402
from scaling import worker_scaling  # noqa: E402  (bench/scaling.py)
from dl3d.video.clip_spec import BodyClipSpec  # noqa: E402
from dl3d.video.decode import VideoRef, iter_frame_batches  # noqa: E402
from dl3d.video.ingest import IngestVideosConfig, ingest_videos  # noqa: E402
from dl3d.video.pose import build_detector  # noqa: E402
from dl3d.video.synthetic_clip import write_body_clips  # noqa: E402
from dl3d.workers.pose_detect import PoseDetectWorker  # noqa: E402
from dl3d.workers.video_config import PoseDetectConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=4, help="videos (one shard each)")
    ap.add_argument("--frames", type=int, default=48, help="frames per video")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--workers", type=int, default=2, help="workers in the second run")
    ap.add_argument("--ray-address", default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        [clip] = write_body_clips(f"{tmp}/render", make_procedural_body_model(),
                                  BodyClipSpec(frames=args.frames, width=args.width, height=args.height,
                                               focal_length=args.width * 0.94))
        for i in range(args.videos):
            os.makedirs(f"{tmp}/clips", exist_ok=True)
            shutil.copy(clip, f"{tmp}/clips/walk_{i:03d}.mp4")
        ingest_videos(f"{tmp}/clips", f"{tmp}/videos", IngestVideosConfig(videos_per_shard=1))
        print(f"clip: {args.frames} frames {args.width}x{args.height}, rendered in {time.perf_counter() - t0:.1f} s; "
              f"{args.videos} videos")

        detector = build_detector("blazepose")
        t0 = time.perf_counter()
        found = n = 0
        for batch in iter_frame_batches(VideoRef("walk", url=clip), 32):
            found += int((detector.detect(batch)[..., 2].max(-1) > 0).sum())
            n += len(batch)
        base = n / (time.perf_counter() - t0)
        print(f"no Ray, one detector: {n} frames ({found} with a person) at {base:.0f} frames/s (decode + detect)")

        ensure_ray(args.ray_address, num_cpus=max(args.workers, 1))
        rates = worker_scaling(PoseDetectWorker, PoseDetectConfig(), f"{tmp}/videos", f"{tmp}/out", args.workers,
                               "frames", detail=lambda report: f" (rows {report.row_status})")
        print(f"1 worker / no Ray: {rates[1] / base:.2f}x")
        ray.shutdown()


if __name__ == "__main__":
    main()
