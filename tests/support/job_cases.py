"""The batch jobs under the shared contract tests (S3, faults, resume), with small inputs for each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

Assets = dict[str, str]
"""Paths the jobs need: ``body_model`` (SMPL-format file) and ``synsin_checkpoint`` (.pt)."""


@dataclass(frozen=True)
class JobCase:
    name: str
    cli: tuple[str, ...]
    """``dl3d`` subcommand words, e.g. ("smpl", "export")."""
    worker: Callable[[], type]
    config: Callable[[Assets], Any]
    make_input: Callable[[str, Assets, int], int]
    """(url, assets, shards) -> output rows expected; one shard per video/scene."""
    cli_args: Callable[[Assets], tuple[str, ...]]
    path_column: str
    """Output column naming each row's file (mesh or image), relative to the output prefix."""
    files_dir: str
    """Top folder of those files in the output."""

    def check_files(self, out) -> int:
        """Every referenced file exists and every file under ``files_dir`` is referenced once; returns the count."""
        import pyarrow.parquet as pq

        referenced = [p for part in sorted(out.glob("part-*.parquet"))
                      for p in pq.read_table(part).column(self.path_column).to_pylist() if p is not None]
        on_disk = sorted(p.relative_to(out).as_posix() for p in (out / self.files_dir).rglob("*") if p.is_file())
        assert len(referenced) == len(set(referenced)), "a file is referenced twice"
        assert sorted(referenced) == on_disk, "output files and the rows that reference them differ"
        return len(on_disk)


def _export_worker():
    from dl3d.workers.smpl_export import SmplExportWorker

    return SmplExportWorker


def _export_config(assets: Assets):
    from dl3d.workers.smpl_export import SmplExportConfig

    return SmplExportConfig(model=assets["body_model"], meshes="ply")


def _export_input(url: str, assets: Assets, shards: int) -> int:
    from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset

    return write_smpl_params_dataset(url, SmplParamsSpec(videos=shards, frames=30, shards=shards, seed=1))["num_rows"]


def _fit_worker():
    from dl3d.workers.smpl_fit import SmplFitWorker

    return SmplFitWorker


def _fit_config(assets: Assets):
    from dl3d.workers.smpl_fit import SmplFitConfig

    return SmplFitConfig(model=assets["body_model"], preset="fast", meshes="ply")


def _fit_input(url: str, assets: Assets, shards: int) -> int:
    import tempfile

    from dl3d.body import read_body_model_arrays
    from dl3d.ingest import IngestConfig, ingest_openpose
    from dl3d.synthetic.smpl_video_dataset import SmplVideoDatasetSpec, write_smpl_video_dataset

    with tempfile.TemporaryDirectory() as tmp:
        write_smpl_video_dataset(tmp, read_body_model_arrays(assets["body_model"]),
                                 SmplVideoDatasetSpec(videos=shards, frames=12, seed=2))
        report = ingest_openpose(f"{tmp}/openpose", url, IngestConfig(videos_per_shard=1, image_width=1280,
                                                                      image_height=720, focal_length=1000.0))
    return report.rows


def _render_worker():
    from dl3d.workers.synsin_render import SynSinRenderWorker

    return SynSinRenderWorker


def _render_config(assets: Assets):
    from dl3d.workers.synsin_render import SynSinRenderConfig

    return SynSinRenderConfig(checkpoint=assets["synsin_checkpoint"], steps=3, gif=True)


def _render_input(url: str, assets: Assets, shards: int) -> int:
    from render_inputs import write_images_dataset

    return 3 * write_images_dataset(url, shards=shards, per_shard=2)


EXPORT = JobCase("export", ("smpl", "export"), _export_worker, _export_config, _export_input,
                 lambda a: ("--model", a["body_model"], "--meshes", "ply"), "mesh_path", "meshes")
FIT = JobCase("fit", ("smpl", "fit"), _fit_worker, _fit_config, _fit_input,
              lambda a: ("--model", a["body_model"], "--preset", "fast", "--meshes", "ply"), "mesh_path", "meshes")
RENDER = JobCase("render", ("synsin", "render"), _render_worker, _render_config, _render_input,
                 lambda a: ("--checkpoint", a["synsin_checkpoint"], "--steps", "3"), "image_path", "views")
CASES = [EXPORT, FIT, RENDER]
