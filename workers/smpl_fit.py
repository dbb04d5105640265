"""``dl3d smpl fit``: SMPLify over a keypoints2d dataset — SMPL parameters, errors and meshes per row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from dl3d.data import DataError, JobOutput, arrow_to_tensor, read_table, to_table
from dl3d.data.dataset import check_positive
from dl3d.data.keypoint_tables import KEYPOINTS2D, NUM_KEYPOINTS
from dl3d.data.smpl_tables import SMPL_FIT
from dl3d.workers.base import ShardTask
from dl3d.workers.smpl_common import SmplJobWorker
from dl3d.workers.smpl_config import SmplFitConfig
from dl3d.workers.smpl_export import smpl_forward

FIT_FIELDS = ("betas", "global_orient", "body_pose", "transl", "joints3d", "reprojection_error_px", "loss", "status",
              "flipped")


class SmplFitWorker(SmplJobWorker):
    """Fits SMPL to every row of a ``keypoints2d`` shard, all tracks of the shard in one batch."""

    config_cls = SmplFitConfig
    job_kind = "smpl_fit"
    fuse_shards = 8  # SMPLify is op-bound on a CPU: 8 shards of 500 rows fit ~1.3x faster as one batch than as 4 of 2

    @classmethod
    def preflight(cls, config: SmplFitConfig) -> None:
        super().preflight(config)
        if config.gmm:  # the prior's reader needs torch; without --gmm the driver never imports it (~1.7 s)
            from dl3d.fitting.priors import load_gmm_prior

            load_gmm_prior(config.gmm)

    def setup(self) -> None:
        from dl3d.body.joints_kernel import build_points_kernel
        from dl3d.fitting.priors import builtin_pose_prior, load_gmm_prior

        arrays = self.read_body_model()  # once: the kernel and the mesh model are built from the same arrays
        self.kernel = build_points_kernel(arrays).to(self.device)
        self.prior = (load_gmm_prior(self.config.gmm) if self.config.gmm else builtin_pose_prior()).to(self.device)
        self.smplify = self.config.smplify()
        self.mesh_model = self.build_body_model(arrays) if self.config.meshes != "none" else None

    def read_shard(self, task: ShardTask) -> dict[str, Any]:
        """The shard's table, checked: keypoints (N, K, 3) px, track index (N,), frames (N,), camera."""
        src = task.shard.url
        table = read_table(src, KEYPOINTS2D)
        fmt = _single_format(table, src)
        keypoints = arrow_to_tensor(table.column("keypoints"), (NUM_KEYPOINTS[fmt], 3), name="keypoints", source=src)
        videos = table.column("video").to_pylist()
        tracks = np.asarray(table.column("track").to_pylist(), dtype=np.int64)
        frames = np.asarray(table.column("frame").to_pylist(), dtype=np.int64)
        focal, pp = self._camera(table, src)
        # One id per (video, track), so tracks of different videos never share an index.
        _, track_index = np.unique(np.array([f"{v}\x00{t}" for v, t in zip(videos, tracks)], dtype=object),
                                   return_inverse=True)
        return {"table": table, "format": fmt, "keypoints": keypoints, "track_index": track_index.astype(np.int64),
                "frames": frames, "focal": focal, "pp": pp}

    def compute_shard(self, task: ShardTask, data: dict[str, Any]) -> dict[str, Any]:
        """SMPLify over every track of the shard."""
        return {"table": data["table"], "fit": self._fit(data), "focal": data["focal"], "pp": data["pp"]}

    def compute_shards(self, tasks: list[ShardTask], data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The shards of one keypoint format fitted as one batch (tracks stay apart: each (shard, track) is its
        own track), then split back into shards."""
        results: list[dict[str, Any]] = [{} for _ in data]
        formats: dict[str, list[int]] = {}
        for i, d in enumerate(data):
            formats.setdefault(d["format"], []).append(i)
        for members in formats.values():
            fit = self._fit(_merge([data[i] for i in members]))
            start = 0
            for i in members:
                d = data[i]
                n = d["table"].num_rows
                part = {key: value[start:start + n] for key, value in fit.items()}
                results[i] = {"table": d["table"], "fit": part, "focal": d["focal"], "pp": d["pp"]}
                start += n
        return results

    def _fit(self, data: dict[str, Any]) -> dict[str, np.ndarray]:
        """``FIT_FIELDS`` of every row of ``data`` (what :meth:`read_shard` returns), in groups of whole tracks
        of at most ``max_rows`` rows."""
        from dl3d.fitting.smplify import fit_smplify

        track_index, frames, focal, pp = data["track_index"], data["frames"], data["focal"], data["pp"]
        n = len(track_index)
        fit = _empty_fit(self.kernel.num_betas) if n == 0 else {}
        for rows in _batches(track_index, self.config.max_rows):
            result = fit_smplify(self.kernel, data["keypoints"][rows], data["format"], track_index[rows], frames[rows],
                                 focal[rows], pp[rows], self.smplify, prior=self.prior)
            for key in FIT_FIELDS:
                value = getattr(result, key)
                fit.setdefault(key, np.empty((n,) + value.shape[1:], value.dtype))[rows] = value
        return fit

    def write_shard(self, task: ShardTask, out: JobOutput, result: dict[str, Any]) -> int:
        table, fit = result["table"], result["fit"]
        columns: dict[str, Any] = {name: table.column(name) for name in ("id", "video", "track", "frame")}
        columns |= {"betas": fit["betas"], "global_orient": fit["global_orient"], "body_pose": fit["body_pose"],
                    "transl": fit["transl"], "joints": fit["joints3d"], "focal_length": result["focal"],
                    "principal_point": result["pp"], "reprojection_error_px": fit["reprojection_error_px"],
                    "loss": fit["loss"], "status": [str(s) for s in fit["status"]],
                    "flipped": fit["flipped"].astype(bool)}
        if self.mesh_model is not None:  # posed here, off the compute stage: one shard's vertices at a time
            _, vertices = smpl_forward(self.mesh_model, fit["betas"].astype(np.float32), fit["global_orient"],
                                       fit["body_pose"], fit["transl"], batch_size=1024, vertices=True)
            columns["mesh_path"] = self.write_meshes(out, task.shard.index, vertices,
                                                     keep=[s == "ok" for s in fit["status"]])
        out.write_part(task.shard.index, to_table(SMPL_FIT, columns))
        return table.num_rows

    def _camera(self, table: pa.Table, src: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-row focal length (N,) and principal point (N, 2), pixels: the dataset's, else the options'."""
        n = table.num_rows
        cfg = self.config
        for column in ("image_width", "image_height", "focal_length"):  # bad numbers are input errors: no retry
            check_positive(table, column, src)
        width = _column_or(table, "image_width", cfg.image_width, n)
        height = _column_or(table, "image_height", cfg.image_height, n)
        unknown = np.isnan(width) | np.isnan(height)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise DataError(src, f"row {i} (id {table.column('id')[i].as_py()!r}) has no image size; pass "
                                 "--image-width/--image-height to the fit (or to `dl3d ingest`)")
        focal = _column_or(table, "focal_length", cfg.focal_length, n)
        focal = np.where(np.isnan(focal), np.sqrt(width ** 2 + height ** 2), focal)
        return focal.astype(np.float32), np.stack([width / 2, height / 2], 1).astype(np.float32)


def _single_format(table: pa.Table, src: str) -> str:
    formats = set(table.column("keypoint_format").to_pylist()) if table.num_rows else {"body25"}
    if len(formats) != 1 or next(iter(formats)) not in NUM_KEYPOINTS:
        raise DataError(src, f"column 'keypoint_format': expected one of {sorted(NUM_KEYPOINTS)} for the whole shard, "
                             f"found {sorted(map(str, formats))}")
    return formats.pop()


def _column_or(table: pa.Table, name: str, default: float | None, n: int) -> np.ndarray:
    """(N,) float64 values of an optional numeric column, nulls (or a missing column) filled with ``default``."""
    fill = np.nan if default is None else float(default)
    if name not in table.column_names:
        return np.full(n, fill)
    values = table.column(name).to_pylist()
    return np.array([fill if v is None else float(v) for v in values], dtype=np.float64)


def _merge(data: list[dict[str, Any]]) -> dict[str, Any]:
    """Shards read by :meth:`SmplFitWorker.read_shard` (one keypoint format) as one: rows in shard order, track
    indices offset so that no two shards share one."""
    offsets = np.cumsum([0] + [int(d["track_index"].max()) + 1 if len(d["track_index"]) else 0 for d in data])
    return {"format": data[0]["format"], "keypoints": np.concatenate([d["keypoints"] for d in data]),
            "track_index": np.concatenate([d["track_index"] + off for d, off in zip(data, offsets)]),
            **{key: np.concatenate([d[key] for d in data]) for key in ("frames", "focal", "pp")}}


def _batches(track_index: np.ndarray, max_rows: int):
    """Row indices in groups of whole tracks with at most ``max_rows`` rows (a longer track is its own group)."""
    groups: list[np.ndarray] = []
    current: list[np.ndarray] = []
    size = 0
    for t in np.unique(track_index):
        rows = np.flatnonzero(track_index == t)
        if current and size + len(rows) > max_rows:
            groups.append(np.concatenate(current))
            current, size = [], 0
        current.append(rows)
        size += len(rows)
    if current:
        groups.append(np.concatenate(current))
    return groups


def _empty_fit(num_betas: int) -> dict[str, np.ndarray]:
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    return {"betas": z(0, num_betas), "global_orient": z(0, 3), "body_pose": z(0, 69), "transl": z(0, 3),
            "joints3d": z(0, 24, 3), "reprojection_error_px": z(0), "loss": z(0), "status": np.array([], object),
            "flipped": np.zeros(0, bool)}
