"""The ``dl3d`` command line: one table, :data:`COMMANDS`, that the parser, the tests and the README read.

Each row names its code as ``"module:attribute"`` strings (as ``FAMILY_MODULES`` does for training
families), imported only when that command is run or asked for ``--help``: ``dl3d --help`` and
``dl3d smpl fit --help`` import neither torch nor Ray. Options come from config dataclasses
(``dl3d.jobs.cli_args``); a batch job's are its worker's config plus the runner's
(``dl3d.jobs.runner_config``). Adding a batch job is one :class:`BatchJob` row.

The commands, in the table's order:

"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Any, Sequence

Arg = tuple[tuple[str, ...], dict[str, Any]]
"""One plain ``argparse`` argument: (flags, keyword arguments)."""


def arg(*flags: str, **kwargs: Any) -> Arg:
    """An argument of a :class:`Command` row, spelt as for ``parser.add_argument``."""
    return flags, kwargs


def load(path: str) -> Any:
    """The object a ``"module:attribute"`` string names (``ValueError`` when it does not resolve)."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"expected 'module:attribute', got {path!r}")
    try:
        return getattr(importlib.import_module(module), attr)
    except AttributeError as exc:
        raise ValueError(f"{path}: module {module} has no attribute {attr!r}") from exc


@dataclass(frozen=True)
class Command:
    """``dl3d WORDS`` runs ``run`` (``"module:function"``, called with the parsed args, returns the exit code)."""

    words: str
    run: str
    help: str
    args: tuple[Arg, ...] = ()
    """Plain arguments, added before the config options."""
    config: tuple[str, ...] = ()
    """``"module:Class"`` config dataclasses whose fields become options."""
    description: str | None = None

    def add_options(self, p: argparse.ArgumentParser) -> None:
        from dl3d.jobs.cli_args import add_dataclass_arguments

        for flags, kwargs in self.args:
            p.add_argument(*flags, **kwargs)
        for cls in self.config:
            add_dataclass_arguments(p, load(cls))
        p.set_defaults(func=load(self.run))


@dataclass(frozen=True)
class BatchJob:
    """``dl3d WORDS --input URL --output URL``: the shard runner drives ``worker`` (a ``ShardWorker``)
    with ``config`` (its options dataclass, in a module that imports no torch) over every shard."""

    words: str
    worker: str
    """``"module:Class"`` of the worker, imported when the job runs."""
    config: str
    """``"module:Class"`` of the worker's config dataclass (``worker.config_cls``), imported for ``--help``."""
    help: str

    @property
    def description(self) -> str:
        return self.help

    def worker_class(self) -> type:
        worker = load(self.worker)
        if worker.config_cls is not load(self.config):
            raise TypeError(f"{self.worker}.config_cls is {worker.config_cls.__name__}, the CLI table says {self.config}")
        return worker

    def add_options(self, p: argparse.ArgumentParser) -> None:
        from dl3d.jobs.cli_args import add_dataclass_arguments
        from dl3d.jobs.commands import run_batch_job
        from dl3d.jobs.runner_config import RunnerConfig

        p.add_argument("--input", required=True, help="input dataset URL: a dl3d dataset or a folder of Parquet files")
        p.add_argument("--output", required=True, help="output URL; re-running the same command resumes")
        add_dataclass_arguments(p, load(self.config))
        add_dataclass_arguments(p, RunnerConfig)
        p.set_defaults(func=run_batch_job, job=self)


@dataclass(frozen=True)
class Registry:
    """``dl3d WORDS NAME``: one subcommand per name of a registry (training families), added by ``add``."""

    words: str
    names: str
    """``"module:function"`` returning the names, e.g. ``known_families``."""
    add: str
    """``"module:function"``: ``add(subparsers, name, with_options) -> parser`` adds ``NAME``."""
    help: str
    metavar: str = "NAME"
    dest: str = "name"
    description: str | None = None


Row = Command | BatchJob | Registry

OUT = arg("--out", required=True, help="output URL (local path or s3://bucket/prefix)")
BODY_MODEL_OPTIONAL = arg("--model", default=None, help="SMPL-format body model file (default: the procedural model)")
INGEST_IN = arg("--input", required=True, help="input folder, file or URL (local or s3://)")
INGEST_OUT = arg("--output", required=True, help="output keypoints2d dataset URL")

COMMANDS: tuple[Row, ...] = (
    Command("body make-model", "dl3d.jobs.commands:make_model",
            "write a procedural body model in SMPL's file format (NOT SMPL)",
            args=(arg("--out", required=True, help="output folder; smpl_procedural.pkl (or .npz) is written there"),
                  arg("--format", choices=["pkl", "npz"], default="pkl", help="file format (default: pkl)"),
                  arg("--num-betas", type=int, default=10, help="shape directions (default: 10)"),
                  arg("--seed", type=int, default=0, help="random seed (default: 0)"))),
    Command("data make smpl-params", "dl3d.jobs.commands:make_smpl_params",
            "smooth random SMPL motions, one row per frame",
            args=(OUT,), config=("dl3d.synthetic.smpl_params:SmplParamsSpec",)),
    Command("data make smpl-video", "dl3d.jobs.commands:make_smpl_video",
            "synthetic keypoint videos in OpenPose JSON, with ground truth",
            args=(OUT, BODY_MODEL_OPTIONAL), config=("dl3d.synthetic.smpl_video_dataset:SmplVideoDatasetSpec",),
            description="Walking bodies seen by a pinhole camera: OpenPose JSON under openpose/, "
                        "ground-truth SMPL parameters under truth/, camera.json."),
    Command("data make multiview", "dl3d.jobs.commands:make_multiview",
            "rendered rooms seen from pairs of cameras (view_pairs, for SynSin)",
            args=(OUT,), config=("dl3d.synthetic.multiview:MultiviewSpec",)),
    Command("data make shapes", "dl3d.jobs.meshrcnn_commands:make_shapes",
            "rendered solids (cube, ellipsoid, cylinder, cone, torus) with masks, meshes, occupancy (for Mesh R-CNN)",
            args=(OUT,), config=("dl3d.synthetic.shapes:ShapesSpec",)),
    Command("data make clevr", "dl3d.jobs.giraffe_commands:make_clevr",
            "CLEVR-like scenes under GIRAFFE's prior (images, with object truth), rendered with pytorch3d",
            args=(OUT,), config=("dl3d.synthetic.clevr:ClevrSpec",)),
    Command("ingest images", "dl3d.jobs.giraffe_commands:ingest_images",
            "a folder or prefix of JPEG/PNG files -> images dataset (original bytes unless resized or cropped)",
            args=(INGEST_IN, arg("--output", required=True, help="output images dataset URL")),
            config=("dl3d.ingest.images:IngestImagesConfig",)),
    Command("ingest pix3d", "dl3d.jobs.meshrcnn_commands:ingest_pix3d",
            "Pix3D (pix3d.json, img/, mask/, model/) -> object_images for Mesh R-CNN",
            args=(INGEST_IN, arg("--output", required=True, help="output object_images dataset URL")),
            config=("dl3d.ingest.pix3d:IngestPix3DConfig",)),
    Command("ingest r2n2", "dl3d.jobs.meshrcnn_commands:ingest_r2n2",
            "ShapeNet as 3D-R2N2 ships it (ShapeNetRendering/, ShapeNetVox32/) + ShapeNetCore v1 -> object_images",
            args=(arg("--input", required=True, help="R2N2 root (folder or URL): ShapeNetRendering/, ShapeNetVox32/"),
                  arg("--shapenet", required=True, help="ShapeNetCore v1 root (folder or URL): <synset>/<model>/model.obj"),
                  arg("--output", required=True, help="output object_images dataset URL")),
            config=("dl3d.ingest.r2n2:IngestR2N2Config",)),
    Command("ingest openpose", "dl3d.jobs.commands:ingest_openpose",
            "OpenPose BODY_25 / BODY_25B / COCO-18 JSON: a folder of video folders of *_keypoints.json (or *.json)",
            args=(INGEST_IN, INGEST_OUT), config=("dl3d.ingest:IngestConfig",)),
    Command("ingest coco", "dl3d.jobs.commands:ingest_coco",
            "COCO-17 / PoseTrack keypoint JSON (a file or a folder of files)",
            args=(INGEST_IN, INGEST_OUT), config=("dl3d.ingest:IngestConfig",)),
    Command("ingest realestate10k", "dl3d.jobs.commands:ingest_realestate10k",
            "RealEstate10K camera files + frame images -> view_pairs",
            args=(arg("--cameras", required=True, help="folder (or URL) of the per-sequence camera .txt files"),
                  arg("--frames", required=True, help="folder (or URL) holding <sequence>/<timestamp>.png|jpg"),
                  arg("--output", required=True, help="output view_pairs dataset URL")),
            config=("dl3d.ingest:IngestRealEstateConfig",),
            description="RealEstate10K: one camera .txt per sequence (URL line, then timestamp fx fy cx cy k1 k2 "
                        "and a 3x4 world-to-camera pose per frame, intrinsics normalised) and frames at "
                        "FRAMES/<sequence>/<timestamp>.png|jpg."),
    BatchJob("smpl fit", "dl3d.workers.smpl_fit:SmplFitWorker", "dl3d.workers.smpl_config:SmplFitConfig",
             "SMPLify: fit SMPL bodies to a keypoints2d dataset (one shape per track, temporal)"),
    BatchJob("smpl export", "dl3d.workers.smpl_export:SmplExportWorker", "dl3d.workers.smpl_config:SmplExportConfig",
             "pose an SMPL-format body model for each row: joints, vertices, meshes"),
    Command("smpl evaluate", "dl3d.jobs.commands:evaluate_fit", "score SMPLify fits against ground truth (mm, px)",
            args=(arg("--fit", required=True, help="output of `dl3d smpl fit`"),
                  arg("--truth", required=True, help="truth dataset with a joints column (`dl3d data make smpl-video`)"),
                  arg("--json", action="store_true", help="print the metrics as JSON"))),
    Command("data make body-clip", "dl3d.jobs.video_commands:make_body_clip",
            "small MP4s of a body model walking, rendered with pytorch3d (the video demo's input)",
            args=(OUT, BODY_MODEL_OPTIONAL), config=("dl3d.video.clip_spec:BodyClipSpec",)),
    Command("ingest videos", "dl3d.jobs.video_commands:ingest_videos",
            "video files (mp4, mov, avi, mkv, webm) or folders of numbered images -> videos dataset",
            args=(INGEST_IN, arg("--output", required=True, help="output videos dataset URL")),
            config=("dl3d.video.ingest:IngestVideosConfig",)),
    BatchJob("pose detect", "dl3d.workers.pose_detect:PoseDetectWorker", "dl3d.workers.video_config:PoseDetectConfig",
             "2D pose detection (BlazePose, one person per video) on a videos dataset -> keypoints2d"),
    Command("smpl render", "dl3d.jobs.video_commands:smpl_render",
            "fitted meshes drawn over the original frames: one MP4 per video (batch job over the fit's shards)",
            args=(arg("--fit", required=True, help="output of `dl3d smpl fit`"),
                  arg("--output", required=True, help="output URL; re-running the same command resumes")),
            config=("dl3d.workers.video_config:SmplRenderConfig", "dl3d.jobs.runner_config:RunnerConfig")),
    BatchJob("synsin render", "dl3d.workers.synsin_render:SynSinRenderWorker",
             "dl3d.workers.synsin_config:SynSinRenderConfig",
             "SynSin mass view synthesis: views of every image along a trajectory"),
    BatchJob("meshrcnn reconstruct", "dl3d.workers.meshrcnn_reconstruct:MeshRCNNReconstructWorker",
             "dl3d.workers.meshrcnn_config:MeshRCNNReconstructConfig",
             "Mesh R-CNN: per detection class, score, box, mask, dz and a camera-frame mesh of every image"),
    Command("giraffe plan", "dl3d.jobs.giraffe_commands:make_plan",
            "a giraffe_plan dataset: N samples (latent seeds) x K frames of one render program",
            args=(OUT,), config=("dl3d.workers.giraffe_config:GiraffePlanSpec",)),
    BatchJob("giraffe sweep", "dl3d.workers.giraffe_sweep:GiraffeSweepWorker",
             "dl3d.workers.giraffe_config:GiraffeSweepConfig",
             "GIRAFFE controllable render sweeps: frames, object alpha maps and a GIF per plan row"),
    Registry("train", "dl3d.train.family:known_families", "dl3d.jobs.train:add_family_parser",
             "train a model family on Ray Train (re-running resumes)", metavar="MODEL", dest="model",
             description="Distributed training of a model family on Ray Train; the same command again resumes."),
    Command("inspect", "dl3d.jobs.commands:inspect",
            "summarise a dataset or job output: metadata, shards, rows, columns, meshes",
            args=(arg("url", help="dataset or output URL"),)),
)
"""Every ``dl3d`` command, in the order ``dl3d --help`` lists them."""

GROUP_HELP: dict[str, str] = {
    "body": "body model files",
    "data": "synthetic datasets",
    "data make": "generate a synthetic dataset",
    "ingest": "convert files from other tools into datasets",
    "smpl": "SMPL bodies: fit to keypoints, export, evaluate",
    "synsin": "SynSin view synthesis",
    "pose": "2D pose detection on videos",
    "meshrcnn": "Mesh R-CNN mesh reconstruction",
}
"""One line of help per command group (a group missing here is described as '<name> commands')."""

_DESTS = ("group", "cmd", "kind", "sub")


def command_tree(rows: Sequence[Row] = COMMANDS) -> dict[str, Any]:
    """Nested dict of command words -> row (a leaf) or dict (a group); duplicates raise ``ValueError``."""
    root: dict[str, Any] = {}
    for row in rows:
        *groups, leaf = row.words.split()
        node = root
        for i, g in enumerate(groups):
            node = node.setdefault(g, {})
            if not isinstance(node, dict):
                raise ValueError(f"'dl3d {' '.join(groups[:i + 1])}' is both a command and a group")
        if leaf in node:
            raise ValueError(f"'dl3d {row.words}' is registered twice")
        node[leaf] = row
    return root


def usage_lines(rows: Sequence[Row] = COMMANDS) -> list[str]:
    """``dl3d WORDS    help`` for every row, in order."""
    return [f"    dl3d {(r.words + (' ' + r.metavar if isinstance(r, Registry) else '')):<24}{r.help}" for r in rows]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``dl3d`` parser.

    Args:
        argv: the command line about to be parsed. Only the command it names gets its options (so
            ``--help`` imports no model code); None builds every command in full.
    """
    selected = None if argv is None else tuple(_command_words(argv))
    parser = argparse.ArgumentParser(
        prog="dl3d", description="Distributed batch processing for 3D deep learning on Ray.",
        epilog="commands:\n" + "\n".join(usage_lines()), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_level(parser, command_tree(), (), selected)
    return parser


def _command_words(argv: Sequence[str]) -> list[str]:
    words = []
    for a in argv:
        if a.startswith("-"):
            break
        words.append(a)
    return words


def _add_level(parser: argparse.ArgumentParser, node: dict[str, Any], path: tuple[str, ...],
               selected: tuple[str, ...] | None) -> None:
    subs = parser.add_subparsers(dest=_DESTS[min(len(path), len(_DESTS) - 1)], required=True, metavar="COMMAND")
    for name, child in node.items():
        here = path + (name,)
        expand = selected is None or selected[:len(here)] == here
        if isinstance(child, dict):
            words = " ".join(here)
            p = subs.add_parser(name, help=GROUP_HELP.get(words, f"{name} commands"), description=GROUP_HELP.get(words))
            if expand:
                _add_level(p, child, here, selected)
        elif isinstance(child, Registry):
            p = subs.add_parser(name, help=child.help, description=child.description or child.help)
            if expand:
                chosen = None if selected is None or len(selected) <= len(here) else selected[len(here)]
                models = p.add_subparsers(dest=child.dest, required=True, metavar=child.metavar)
                for item in load(child.names)():
                    q = load(child.add)(models, item, selected is None or item == chosen)
                    if selected is None or item == chosen:
                        _add_common(q)
        else:
            p = subs.add_parser(name, help=child.help, description=child.description or child.help)
            if expand:
                child.add_options(p)
                _add_common(p)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's own log lines (they are always kept in Ray's log files)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    from dl3d.jobs.console import console_filter, set_verbose

    set_verbose(args.verbose)
    try:
        with console_filter():
            return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # DataError, BodyModelError and bad options are ValueErrors
        print(f"dl3d: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dl3d: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        ray_env = sys.modules.get("dl3d.jobs.ray_env")  # imported by the commands that use Ray, only
        if ray_env is not None:
            ray_env.stop_embedded_ray()


__doc__ = (__doc__ or "") + "\n".join(usage_lines()) + "\n"

if __name__ == "__main__":
    sys.exit(main())
