"""The Mesh R-CNN rows of the ``dl3d`` CLI table that are not batch jobs: rendered shapes data, Pix3D and R2N2 ingest."""

from __future__ import annotations

import argparse

from dl3d.jobs.cli_args import dataclass_from_args


def make_shapes(args: argparse.Namespace) -> int:
    from dl3d.synthetic.shapes import ShapesSpec, write_shapes_dataset

    spec = dataclass_from_args(ShapesSpec, args)
    meta = write_shapes_dataset(args.out, spec)
    print(f"wrote {meta['num_rows']} images of {spec.min_objects}-{spec.max_objects} solids "
          f"({spec.image_size}x{spec.image_size}; classes {', '.join(meta['categories'])}) "
          f"in {meta['num_shards']} shards to {args.out}")
    return 0


def ingest_pix3d(args: argparse.Namespace) -> int:
    from dl3d.ingest.pix3d import IngestPix3DConfig
    from dl3d.ingest.pix3d import ingest_pix3d as run

    from dl3d.jobs.commands import print_report

    return print_report(run(args.input, args.output, dataclass_from_args(IngestPix3DConfig, args)))


def ingest_r2n2(args: argparse.Namespace) -> int:
    from dl3d.ingest.r2n2 import IngestR2N2Config
    from dl3d.ingest.r2n2 import ingest_r2n2 as run

    from dl3d.jobs.commands import print_report

    return print_report(run(args.input, args.shapenet, args.output, dataclass_from_args(IngestR2N2Config, args)))
