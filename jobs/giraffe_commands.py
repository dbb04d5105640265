"""The GIRAFFE rows of the ``dl3d`` CLI table that are not batch jobs: CLEVR data and image ingest."""

from __future__ import annotations

import argparse

from dl3d.jobs.cli_args import dataclass_from_args


def make_clevr(args: argparse.Namespace) -> int:
    from dl3d.synthetic.clevr import ClevrSpec, write_clevr_dataset

    spec = dataclass_from_args(ClevrSpec, args)
    meta = write_clevr_dataset(args.out, spec)
    print(f"wrote {meta['num_rows']} CLEVR-like scenes ({spec.image_size}x{spec.image_size}, "
          f"{spec.min_objects}-{spec.max_objects} objects) in {meta['num_shards']} shards to {args.out}")
    return 0


def ingest_images(args: argparse.Namespace) -> int:
    from dl3d.ingest.images import IngestImagesConfig
    from dl3d.ingest.images import ingest_images as run

    from dl3d.jobs.commands import print_report

    return print_report(run(args.input, args.output, dataclass_from_args(IngestImagesConfig, args)))


def make_plan(args: argparse.Namespace) -> int:
    from dl3d.workers.giraffe_config import GiraffePlanSpec
    from dl3d.workers.giraffe_sweep import write_plan

    spec = dataclass_from_args(GiraffePlanSpec, args)
    meta = write_plan(args.out, spec)
    print(f"wrote a plan of {meta['num_rows']} samples x {spec.frames} frames of {spec.program} in "
          f"{meta['num_shards']} shards to {args.out}")
    return 0
