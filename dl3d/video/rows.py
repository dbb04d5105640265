"""Decode the rows of a ``videos`` table (``dl3d.data.video_tables.VIDEOS``) into :class:`VideoRow` objects."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from dl3d.data import DataError
from dl3d.data.video_tables import VIDEOS
from dl3d.video.decode import VideoRef

USABLE_STATUSES = ("ok", "truncated")
"""Videos whose frames are decoded: a truncated video's frames up to the cut are still frames."""


@dataclass(frozen=True)
class VideoRow:
    """One video of a ``videos`` dataset."""

    ref: VideoRef
    width: int | None
    height: int | None
    fps: float | None
    num_frames: int
    rotation: int
    focal_length: float | None
    status: str
    error: str | None

    @property
    def id(self) -> str:
        return self.ref.id

    @property
    def usable(self) -> bool:
        return self.status in USABLE_STATUSES


def decode_videos_table(table: pa.Table, source: str) -> list[VideoRow]:
    """The rows of a ``videos`` shard; a row that names no video at all is a DataError naming it."""
    VIDEOS.validate(table, source)
    cols = {name: (table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows)
            for name in VIDEOS.by_name}
    rows = []
    for i in range(table.num_rows):
        vid = cols["id"][i]
        if vid is None:
            raise DataError(source, f"column 'id': null value at row {i}")
        url, data, files = cols["url"][i], cols["data"][i], cols["frame_files"][i]
        if url is None and data is None and not files:
            raise DataError(source, f"row {i} (id {vid!r}): no url, data or frame_files: nothing to decode")
        status = cols["status"][i] or "ok"
        rows.append(VideoRow(
            VideoRef(str(vid), url=url, data=data, frame_files=tuple(files) if files else None),
            cols["width"][i], cols["height"][i], cols["fps"][i], int(cols["num_frames"][i] or 0),
            int(cols["rotation"][i] or 0), cols["focal_length"][i], status, cols["error"][i]))
    return rows
