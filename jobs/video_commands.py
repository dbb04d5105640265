"""The video commands that are not plain batch jobs: ``dl3d ingest videos`` and ``dl3d smpl render``.

One function per row of the CLI table (``dl3d.jobs.cli.COMMANDS``); heavy imports inside.
"""

from __future__ import annotations

import argparse

from dl3d.jobs.cli_args import dataclass_from_args


def ingest_videos(args: argparse.Namespace) -> int:
    from dl3d.video.ingest import IngestVideosConfig
    from dl3d.video.ingest import ingest_videos as run

    report = run(args.input, args.output, dataclass_from_args(IngestVideosConfig, args))
    print(report.summary())
    return 0


def smpl_render(args: argparse.Namespace) -> int:
    """``dl3d smpl render --fit FIT --videos VIDEOS --output OUT``: the render batch job over the fit's shards."""
    from dl3d.jobs.runner import run_shards
    from dl3d.jobs.runner_config import RunnerConfig
    from dl3d.workers.smpl_render import SmplRenderWorker
    from dl3d.workers.video_config import SmplRenderConfig

    report = run_shards("dl3d smpl render", SmplRenderWorker, dataclass_from_args(SmplRenderConfig, args),
                        args.fit, args.output, dataclass_from_args(RunnerConfig, args))
    print(report.summary())
    return report.exit_code


def make_body_clip(args: argparse.Namespace) -> int:
    """``dl3d data make body-clip --out DIR``: small MP4s of the (procedural) body walking."""
    from dl3d.body import make_procedural_body_model, read_body_model_arrays
    from dl3d.video.clip_spec import BodyClipSpec
    from dl3d.video.synthetic_clip import write_body_clips

    arrays = read_body_model_arrays(args.model) if args.model else make_procedural_body_model()
    spec = dataclass_from_args(BodyClipSpec, args)
    urls = write_body_clips(args.out, arrays, spec)
    print(f"wrote {len(urls)} clip(s) of {spec.frames} frames ({spec.width}x{spec.height}, {spec.fps} fps) to "
          f"{args.out} (rendered body model; the procedural one is NOT SMPL)")
    return 0
