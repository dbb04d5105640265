"""The ``dl3d`` command line.

    dl3d body make-model --out DIR                        a procedural body model in SMPL's file format
    dl3d data make smpl-params --out URL                  a synthetic dataset of SMPL parameters
    dl3d smpl export --input URL --output URL --model F   posed joints / vertices / meshes for every row
    dl3d ingest openpose|coco --input DIR --output URL    keypoint JSON from other tools -> keypoints2d dataset
    dl3d inspect URL                                      what a dataset or job output holds

Job options are generated from the config dataclasses (``dl3d.jobs.cli_args``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable

from dl3d.jobs.cli_args import add_dataclass_arguments, dataclass_from_args
from dl3d.jobs.runner import RunnerConfig, run_shards


@dataclass(frozen=True)
class BatchJob:
    """One entry of the job registry: ``dl3d GROUP NAME`` runs ``worker`` over a dataset."""

    group: str
    name: str
    help: str
    worker: Callable[[], type]
    """Returns the worker class (imported lazily, so ``dl3d --help`` stays fast)."""


def _smpl_export_worker() -> type:
    from dl3d.workers.smpl_export import SmplExportWorker

    return SmplExportWorker


JOBS: dict[tuple[str, str], BatchJob] = {}


def register(job: BatchJob) -> None:
    key = (job.group, job.name)
    if key in JOBS:
        raise ValueError(f"job 'dl3d {job.group} {job.name}' registered twice")
    JOBS[key] = job


register(BatchJob("smpl", "export", "pose an SMPL-format body model for each row: joints, vertices, meshes",
                  _smpl_export_worker))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dl3d", description="Distributed batch processing for 3D deep learning on Ray.")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    body = groups.add_parser("body", help="body model files").add_subparsers(dest="cmd", required=True)
    mk = body.add_parser("make-model", help="write a procedural body model in SMPL's file format (NOT SMPL)")
    mk.add_argument("--out", required=True, help="output folder; smpl_procedural.pkl (or .npz) is written there")
    mk.add_argument("--format", choices=["pkl", "npz"], default="pkl", help="file format (default: pkl)")
    mk.add_argument("--num-betas", type=int, default=10, help="shape directions (default: 10)")
    mk.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    mk.set_defaults(func=_cmd_make_model)

    data = groups.add_parser("data", help="synthetic datasets").add_subparsers(dest="cmd", required=True)
    make = data.add_parser("make", help="generate a synthetic dataset").add_subparsers(dest="kind", required=True)
    from dl3d.synthetic.smpl_params import SmplParamsSpec

    sp = make.add_parser("smpl-params", help="smooth random SMPL motions, one row per frame")
    sp.add_argument("--out", required=True, help="dataset URL (local path or s3://bucket/prefix)")
    add_dataclass_arguments(sp, SmplParamsSpec)
    sp.set_defaults(func=_cmd_make_smpl_params)

    ingest = groups.add_parser("ingest", help="convert keypoint files from other tools into datasets").add_subparsers(
        dest="cmd", required=True)
    from dl3d.ingest import IngestConfig

    for fmt, what in (("openpose", "OpenPose BODY_25 JSON: a folder of video folders of *_keypoints.json"),
                      ("coco", "COCO-17 / PoseTrack keypoint JSON (a file or a folder of files)")):
        ing = ingest.add_parser(fmt, help=what, description=what)
        ing.add_argument("--input", required=True, help="input folder, file or URL (local or s3://)")
        ing.add_argument("--output", required=True, help="output keypoints2d dataset URL")
        add_dataclass_arguments(ing, IngestConfig)
        ing.set_defaults(func=_cmd_ingest, fmt=fmt)

    insp = groups.add_parser("inspect", help="summarise a dataset or job output: metadata, shards, rows, columns, meshes")
    insp.add_argument("url", help="dataset or output URL")
    insp.set_defaults(func=_cmd_inspect)

    job_groups: dict[str, argparse._SubParsersAction] = {}
    for job in JOBS.values():
        if job.group not in job_groups:
            job_groups[job.group] = groups.add_parser(job.group, help=f"{job.group} jobs").add_subparsers(
                dest="cmd", required=True)
        worker = job.worker()
        p = job_groups[job.group].add_parser(job.name, help=job.help, description=job.help)
        p.add_argument("--input", required=True, help="input dataset URL: a dl3d dataset or a folder of Parquet files")
        p.add_argument("--output", required=True, help="output URL; re-running the same command resumes")
        add_dataclass_arguments(p, worker.config_cls)
        add_dataclass_arguments(p, RunnerConfig)
        p.set_defaults(func=_cmd_batch_job, job=job)
    return parser


def _cmd_make_model(args: argparse.Namespace) -> int:
    from dl3d.body import make_procedural_body_model, write_body_model

    path = write_body_model(make_procedural_body_model(num_betas=args.num_betas, seed=args.seed), args.out, fmt=args.format)
    print(f"wrote {path} (procedural body model, NOT SMPL)")
    return 0


def _cmd_make_smpl_params(args: argparse.Namespace) -> int:
    from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset

    meta = write_smpl_params_dataset(args.out, dataclass_from_args(SmplParamsSpec, args))
    print(f"wrote {meta['num_rows']} rows in {meta['num_shards']} shards to {args.out}")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from dl3d.ingest import IngestConfig, ingest_coco, ingest_openpose

    run = ingest_openpose if args.fmt == "openpose" else ingest_coco
    report = run(args.input, args.output, dataclass_from_args(IngestConfig, args))
    print(report.summary())
    for item in report.skipped:
        print(f"  skipped {item.name}: {item.reason}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from dl3d.data.inspect import describe

    print(describe(args.url))
    return 0


def _cmd_batch_job(args: argparse.Namespace) -> int:
    job: BatchJob = args.job
    worker = job.worker()
    report = run_shards(f"dl3d {job.group} {job.name}", worker, dataclass_from_args(worker.config_cls, args),
                        args.input, args.output, dataclass_from_args(RunnerConfig, args))
    print(report.summary())
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # DataError, BodyModelError and bad options are ValueErrors
        print(f"dl3d: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dl3d: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
