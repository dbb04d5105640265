"""What the ``dl3d`` commands that are not batch jobs do: one function per row of the CLI table.

Each takes the parsed ``argparse.Namespace`` and returns the exit code. Heavy imports happen inside
the functions, so building the parser (``dl3d --help``) imports no model code.
"""

from __future__ import annotations

import argparse

from dl3d.jobs.cli_args import dataclass_from_args


def make_model(args: argparse.Namespace) -> int:
    from dl3d.body import make_procedural_body_model, write_body_model

    path = write_body_model(make_procedural_body_model(num_betas=args.num_betas, seed=args.seed), args.out, fmt=args.format)
    print(f"wrote {path} (procedural body model, NOT SMPL)")
    return 0


def make_smpl_params(args: argparse.Namespace) -> int:
    from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset

    return wrote(write_smpl_params_dataset(args.out, dataclass_from_args(SmplParamsSpec, args)), "rows", args.out)


def make_smpl_video(args: argparse.Namespace) -> int:
    from dl3d.body import make_procedural_body_model, read_body_model_arrays
    from dl3d.synthetic.smpl_video_dataset import SmplVideoDatasetSpec, write_smpl_video_dataset

    arrays = read_body_model_arrays(args.model) if args.model else make_procedural_body_model()
    meta = write_smpl_video_dataset(args.out, arrays, dataclass_from_args(SmplVideoDatasetSpec, args))
    cam = meta["camera"]
    print(f"wrote {meta['num_rows']} frames of {args.videos} videos to {args.out} "
          f"(image {cam['image_width']}x{cam['image_height']}, focal {cam['focal_length']} px)")
    return 0


def make_multiview(args: argparse.Namespace) -> int:
    from dl3d.synthetic.multiview import MultiviewSpec, write_multiview_dataset

    return wrote(write_multiview_dataset(args.out, dataclass_from_args(MultiviewSpec, args)), "view pairs", args.out)


def wrote(meta: dict, what: str, url: str) -> int:
    """The line a ``data make`` command ends with, from the dataset's ``_dataset.json`` dict; returns 0."""
    print(f"wrote {meta['num_rows']} {what} in {meta['num_shards']} shards to {url}")
    return 0


def ingest_openpose(args: argparse.Namespace) -> int:
    from dl3d.ingest import IngestConfig
    from dl3d.ingest import ingest_openpose as run

    return print_report(run(args.input, args.output, dataclass_from_args(IngestConfig, args)))


def ingest_coco(args: argparse.Namespace) -> int:
    from dl3d.ingest import IngestConfig
    from dl3d.ingest import ingest_coco as run

    return print_report(run(args.input, args.output, dataclass_from_args(IngestConfig, args)))


def ingest_realestate10k(args: argparse.Namespace) -> int:
    from dl3d.ingest import IngestRealEstateConfig
    from dl3d.ingest import ingest_realestate10k as run

    return print_report(run(args.cameras, args.frames, args.output, dataclass_from_args(IngestRealEstateConfig, args)))


def print_report(report) -> int:
    """The one printer of ingest reports: the summary, then each skipped input with its reason. Returns 0."""
    print(report.summary())
    for item in report.skipped:
        print(f"  skipped {item.name}: {item.reason}")
    return 0


def evaluate_fit(args: argparse.Namespace) -> int:
    import json

    from dl3d.fitting.evaluation import evaluate_fit as evaluate
    from dl3d.fitting.evaluation import format_report

    result = evaluate(args.fit, args.truth)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


def inspect(args: argparse.Namespace) -> int:
    from dl3d.data.inspect import describe

    print(describe(args.url))
    return 0


def run_batch_job(args: argparse.Namespace) -> int:
    """Run the batch job of ``args.job`` (a ``dl3d.jobs.cli.BatchJob`` row) over ``--input`` into ``--output``."""
    from dl3d.jobs.runner import run_shards
    from dl3d.jobs.runner_config import RunnerConfig

    job = args.job
    worker = job.worker_class()
    report = run_shards(f"dl3d {job.words}", worker, dataclass_from_args(worker.config_cls, args),
                        args.input, args.output, dataclass_from_args(RunnerConfig, args))
    print(report.summary())
    return report.exit_code
