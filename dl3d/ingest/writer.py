"""Build ``keypoints2d`` tables from arrays and write them as a sharded dataset.

Rows are sorted by video, track and frame; shards are groups of whole videos (DESIGN.md: a video
never straddles two shards). ``_ingest_errors.json`` beside the shards lists the inputs that were
skipped; ``_dataset.json`` is written last, so a dataset that has it is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dl3d.data import DatasetWriter, tensor_to_arrow, to_table
from dl3d.data import fs as fsx
from dl3d.data.dataset import write_json
from dl3d.data.keypoint_range import far_outside
from dl3d.data.keypoint_tables import KEYPOINTS2D, NUM_KEYPOINTS
from dl3d.ingest.config import IngestConfig
from dl3d.ingest.report import INGEST_ERRORS, IngestReport

__all__ = ["INGEST_ERRORS", "VideoKeypoints", "finish_ingest", "keypoints_table", "row_ids", "shard_videos",
           "write_keypoint_dataset"]


@dataclass
class VideoKeypoints:
    """The rows of one video: one per (track, frame).

    After construction the rows are sorted by track, then frame.
    """

    video: str
    """Video (sequence) id."""
    frames: np.ndarray
    """(N,) int64 frame numbers."""
    tracks: np.ndarray
    """(N,) int64 person track ids."""
    keypoints: np.ndarray
    """(N, J, 3) float32: x, y in pixels (origin top-left, y down), confidence in [0, 1]."""
    keypoint_format: str
    """A name in ``dl3d.keypoints.FORMATS`` ('body25': J = 25, 'coco17': J = 17, ...)."""
    image_size: tuple[int, int] | np.ndarray | None = None
    """(width, height) in pixels for every row, an (N, 2) int array of per-row sizes (0 = unknown;
    in the order the rows are given), or None when unknown. Read back as :attr:`sizes`."""
    focal_length: float | None = None
    """Pixels, or None when unknown."""

    def __post_init__(self):
        if not self.video:
            raise ValueError("expected a non-empty video id")
        if self.keypoint_format not in NUM_KEYPOINTS:
            raise ValueError(f"video {self.video!r}: keypoint_format must be one of {sorted(NUM_KEYPOINTS)}, "
                             f"got {self.keypoint_format!r}")
        j = NUM_KEYPOINTS[self.keypoint_format]
        self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        self.tracks = np.asarray(self.tracks, dtype=np.int64).reshape(-1)
        kp = np.asarray(self.keypoints, dtype=np.float32)
        n = len(self.frames)
        if kp.shape != (n, j, 3):
            raise ValueError(f"video {self.video!r}: expected keypoints of shape ({n}, {j}, 3) for {n} frames "
                             f"of {self.keypoint_format}, got {kp.shape}")
        if len(self.tracks) != n:
            raise ValueError(f"video {self.video!r}: expected {n} track ids, got {len(self.tracks)}")
        if n == 0:
            raise ValueError(f"video {self.video!r}: expected at least one row")
        if not np.isfinite(kp).all():
            raise ValueError(f"video {self.video!r}: keypoints contain NaN or infinite values")
        sizes = self._sizes(n)
        order = np.lexsort((self.frames, self.tracks))
        self.frames, self.tracks, self.keypoints = self.frames[order], self.tracks[order], kp[order]
        self.sizes = sizes[order]
        # Keypoints far outside the image (dl3d.data.keypoint_range) are corrupt numbers: missing, counted.
        known = (self.sizes > 0).all(1)[:, None]
        far = np.where(known, far_outside(self.keypoints, self.sizes[:, :1], self.sizes[:, 1:]), far_outside(self.keypoints))
        self.keypoints[far] = 0
        self.offscreen_keypoints = int(far.sum())
        dup = (np.diff(self.frames) == 0) & (np.diff(self.tracks) == 0)
        if dup.any():
            k = int(np.flatnonzero(dup)[0])
            raise ValueError(f"video {self.video!r}: track {self.tracks[k]} has two rows for frame {self.frames[k]}")

    def _sizes(self, n: int) -> np.ndarray:
        """(N, 2) int64 per-row (width, height), 0 where unknown."""
        if self.image_size is None:
            return np.zeros((n, 2), dtype=np.int64)
        arr = np.asarray(self.image_size)
        if arr.shape == (2,):
            w, h = (int(x) for x in arr)
            if w < 1 or h < 1:
                raise ValueError(f"video {self.video!r}: image size must be positive, got {w}x{h}")
            self.image_size = (w, h)
            return np.tile(np.array([[w, h]], dtype=np.int64), (n, 1))
        if arr.shape != (n, 2) or (arr < 0).any() or ((arr[:, 0] == 0) != (arr[:, 1] == 0)).any():
            raise ValueError(f"video {self.video!r}: expected image_size (width, height) or ({n}, 2) per-row sizes "
                             f">= 0 (0 = unknown), got shape {arr.shape}")
        return arr.astype(np.int64)

    @property
    def num_rows(self) -> int:
        return len(self.frames)

    @property
    def num_tracks(self) -> int:
        return len(np.unique(self.tracks))


def row_ids(video: str, tracks: np.ndarray, frames: np.ndarray) -> list[str]:
    """``'{video}/{track}/{frame:06d}'`` for each row."""
    return [f"{video}/{t}/{f:06d}" for t, f in zip(tracks.tolist(), frames.tolist())]


def keypoints_table(videos: Sequence[VideoKeypoints]) -> pa.Table:
    """The ``keypoints2d`` table of ``videos``, rows in the given video order (then track, frame)."""
    if not videos:
        return KEYPOINTS2D.arrow_schema().empty_table()
    counts = [v.num_rows for v in videos]
    kp = np.concatenate([v.keypoints.reshape(-1, 3) for v in videos])
    joints = np.concatenate([np.full(v.num_rows, NUM_KEYPOINTS[v.keypoint_format]) for v in videos])
    offsets = np.concatenate([[0], np.cumsum(joints)])
    keypoints = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), tensor_to_arrow(kp))

    def per_row(values: list) -> list:
        return [x for x, c in zip(values, counts) for _ in range(c)]

    sizes = np.concatenate([v.sizes for v in videos])

    arrays = {
        "id": pa.array([i for v in videos for i in row_ids(v.video, v.tracks, v.frames)], pa.string()),
        "video": pa.array(per_row([v.video for v in videos]), pa.string()),
        "track": pa.array(np.concatenate([v.tracks for v in videos]), pa.int64()),
        "frame": pa.array(np.concatenate([v.frames for v in videos]), pa.int64()),
        "keypoints": keypoints,
        "keypoint_format": pa.array(per_row([v.keypoint_format for v in videos]), pa.string()),
        "image_width": pa.array(sizes[:, 0], pa.int64(), mask=sizes[:, 0] == 0),
        "image_height": pa.array(sizes[:, 1], pa.int64(), mask=sizes[:, 1] == 0),
        "focal_length": pa.array(per_row([v.focal_length for v in videos]), pa.float64()),
    }
    return to_table(KEYPOINTS2D, arrays)


def shard_videos(
    rows_per_video: Sequence[int], videos_per_shard: int, rows_per_shard: int | None = None,
) -> list[list[int]]:
    """Group consecutive videos into shards.

    rows_per_video: (V,) row counts in dataset order. A shard takes up to ``videos_per_shard`` whole
    videos and, when ``rows_per_shard`` is set, stops before a video that would take it past that many
    rows (a video longer than that gets a shard of its own). Returns the video indices of each shard.
    """
    if videos_per_shard < 1:
        raise ValueError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
    if rows_per_shard is not None and rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be >= 1 or None, got {rows_per_shard}")
    shards: list[list[int]] = []
    rows = 0
    for i, n in enumerate(rows_per_video):
        full = shards and (len(shards[-1]) >= videos_per_shard
                           or (rows_per_shard is not None and rows + n > rows_per_shard))
        if not shards or full:
            shards.append([])
            rows = 0
        shards[-1].append(i)
        rows += n
    return shards


def write_keypoint_dataset(
    url: str,
    videos: Sequence[VideoKeypoints],
    videos_per_shard: int = 16,
    produced_by: dict[str, Any] | None = None,
    *,
    rows_per_shard: int | None = None,
    errors: Sequence[dict[str, str]] = (),
    storage_options: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``videos`` as a ``keypoints2d`` dataset at ``url`` and return its ``_dataset.json`` content.

    Videos are sorted by id and grouped into shards by :func:`shard_videos`. ``errors`` (dicts with
    ``name`` and ``reason``) go to ``_ingest_errors.json``. Writing over an earlier dataset at the
    same URL replaces it (see ``DatasetWriter``). ``extra`` entries go into ``_dataset.json``.
    """
    if not videos:
        raise ValueError(f"{url}: no videos to write")
    videos = sorted(videos, key=lambda v: v.video)
    names = [v.video for v in videos]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"{url}: video ids must be unique, got {dups[:5]} more than once")
    writer = DatasetWriter(url, KEYPOINTS2D, produced_by=dict(produced_by or {}), storage_options=storage_options)
    groups = shard_videos([v.num_rows for v in videos], videos_per_shard, rows_per_shard)
    for index, group in enumerate(groups):
        writer.write_shard(index, keypoints_table([videos[i] for i in group]))
    write_json(writer.fs, fsx.join(writer.root, INGEST_ERRORS), [dict(e) for e in errors])
    formats = sorted({v.keypoint_format for v in videos})
    return writer.close(num_videos=len(videos), keypoint_format=formats[0] if len(formats) == 1 else formats,
                        **(extra or {}))


def finish_ingest(
    output_url: str, videos: list[VideoKeypoints], report: IngestReport, cfg: IngestConfig,
    produced_by: dict[str, Any], storage_options: dict[str, Any] | None,
) -> IngestReport:
    """Write the dataset and complete the report's counts and warnings (both also go to ``_dataset.json``)."""
    formats = sorted({v.keypoint_format for v in videos})
    if len(formats) > 1:
        raise ValueError(f"{produced_by.get('input')}: the input mixes keypoint formats {formats}; one dataset holds "
                         f"one format: pass --keypoint-format, or ingest them separately")
    report.keypoint_format = formats[0]
    report.rows_without_image_size = int(sum((v.sizes[:, 0] == 0).sum() for v in videos))
    if report.rows_without_image_size:
        names = [v.video for v in videos if (v.sizes[:, 0] == 0).any()]
        report.warnings.append(
            f"{report.rows_without_image_size} rows ({len(names)} videos, e.g. {names[0]!r}) have no image size "
            f"(no image beside the keypoints or under --images, no size in the input, no --sizes entry): "
            f"`dl3d smpl fit` needs "
            f"--image-width/--image-height for them, or re-ingest with --image-width/--image-height or --sizes")
    errors = [{"name": s.name, "reason": s.reason} for s in report.skipped]
    meta = write_keypoint_dataset(output_url, videos, cfg.videos_per_shard,
                                  {**produced_by, "config": cfg.__dict__, "skipped_inputs": len(errors)},
                                  rows_per_shard=cfg.rows_per_shard, errors=errors, storage_options=storage_options,
                                  extra={"warnings": report.warnings, "format_reason": report.format_reason,
                                         "people_without_keypoints": report.people_without_keypoints,
                                         "rows_without_image_size": report.rows_without_image_size})
    report.videos = len(videos)
    report.rows = meta["num_rows"]
    report.shards = meta["num_shards"]
    report.tracks = sum(len(np.unique(v.tracks[v.keypoints[..., 2].max(axis=-1) > 0])) for v in videos)
    return report
