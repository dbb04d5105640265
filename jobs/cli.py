"""The ``dl3d`` command line.

    dl3d body make-model --out DIR                        a procedural body model in SMPL's file format
    dl3d data make smpl-params --out URL                  a synthetic dataset of SMPL parameters
    dl3d smpl export --input URL --output URL --model F   posed joints / vertices / meshes for every row
    dl3d ingest openpose|coco --input DIR --output URL    keypoint JSON from other tools -> keypoints2d dataset
    dl3d train MODEL --data URL --storage URL             distributed training on Ray Train (re-running resumes)
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


def _smpl_fit_worker() -> type:
    from dl3d.workers.smpl_fit import SmplFitWorker

    return SmplFitWorker


register(BatchJob("smpl", "fit", "SMPLify: fit SMPL bodies to a keypoints2d dataset (one shape per track, temporal)",
                  _smpl_fit_worker))
def _synsin_render_worker() -> type:
    from dl3d.workers.synsin_render import SynSinRenderWorker

    return SynSinRenderWorker


register(BatchJob("synsin", "render", "SynSin mass view synthesis: views of every image along a trajectory",
                  _synsin_render_worker))
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
    from dl3d.synthetic.smpl_video_dataset import SmplVideoDatasetSpec

    sv = make.add_parser("smpl-video", help="synthetic keypoint videos in OpenPose JSON, with ground truth",
                         description="Walking bodies seen by a pinhole camera: OpenPose JSON under openpose/, "
                                     "ground-truth SMPL parameters under truth/, camera.json.")
    sv.add_argument("--out", required=True, help="output URL (local path or s3://bucket/prefix)")
    sv.add_argument("--model", default=None, help="SMPL-format body model file (default: the procedural model)")
    add_dataclass_arguments(sv, SmplVideoDatasetSpec)
    sv.set_defaults(func=_cmd_make_smpl_video)
    from dl3d.synthetic.multiview import MultiviewSpec

    mv = make.add_parser("multiview", help="rendered rooms seen from pairs of cameras (view_pairs, for SynSin)")
    mv.add_argument("--out", required=True, help="dataset URL (local path or s3://bucket/prefix)")
    add_dataclass_arguments(mv, MultiviewSpec)
    mv.set_defaults(func=_cmd_make_multiview)

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

    from dl3d.ingest import IngestRealEstateConfig

    re10k = ingest.add_parser("realestate10k", help="RealEstate10K camera files + frame images -> view_pairs",
                              description="RealEstate10K: one camera .txt per sequence (URL line, then "
                                          "timestamp fx fy cx cy k1 k2 and a 3x4 world-to-camera pose per frame, "
                                          "intrinsics normalised) and frames at FRAMES/<sequence>/<timestamp>.png|jpg.")
    re10k.add_argument("--cameras", required=True, help="folder (or URL) of the per-sequence camera .txt files")
    re10k.add_argument("--frames", required=True, help="folder (or URL) holding <sequence>/<timestamp>.png|jpg")
    re10k.add_argument("--output", required=True, help="output view_pairs dataset URL")
    add_dataclass_arguments(re10k, IngestRealEstateConfig)
    re10k.set_defaults(func=_cmd_ingest_realestate10k)

    from dl3d.jobs.train import add_train_parser

    add_train_parser(groups)

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
    ev = job_groups["smpl"].add_parser("evaluate", help="score SMPLify fits against ground truth (mm, px)")
    ev.add_argument("--fit", required=True, help="output of `dl3d smpl fit`")
    ev.add_argument("--truth", required=True, help="truth dataset with a joints column (`dl3d data make smpl-video`)")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.set_defaults(func=_cmd_evaluate)
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


def _cmd_make_smpl_video(args: argparse.Namespace) -> int:
    from dl3d.body import make_procedural_body_model, read_body_model_arrays
    from dl3d.synthetic.smpl_video_dataset import SmplVideoDatasetSpec, write_smpl_video_dataset

    arrays = read_body_model_arrays(args.model) if args.model else make_procedural_body_model()
    meta = write_smpl_video_dataset(args.out, arrays, dataclass_from_args(SmplVideoDatasetSpec, args))
    cam = meta["camera"]
    print(f"wrote {meta['num_rows']} frames of {args.videos} videos to {args.out} "
          f"(image {cam['image_width']}x{cam['image_height']}, focal {cam['focal_length']} px)")
    return 0


def _cmd_make_multiview(args: argparse.Namespace) -> int:
    from dl3d.synthetic.multiview import MultiviewSpec, write_multiview_dataset

    meta = write_multiview_dataset(args.out, dataclass_from_args(MultiviewSpec, args))
    print(f"wrote {meta['num_rows']} view pairs in {meta['num_shards']} shards to {args.out}")
    return 0


def _cmd_ingest_realestate10k(args: argparse.Namespace) -> int:
    from dl3d.ingest import IngestRealEstateConfig, ingest_realestate10k

    report = ingest_realestate10k(args.cameras, args.frames, args.output, dataclass_from_args(IngestRealEstateConfig, args))
    print(report.summary())
    for item in report.skipped:
        print(f"  skipped {item.name}: {item.reason}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from dl3d.fitting.evaluation import evaluate_fit, format_report

    result = evaluate_fit(args.fit, args.truth)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
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
