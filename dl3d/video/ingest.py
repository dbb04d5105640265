"""``dl3d ingest videos``: list the videos under a folder or prefix, probe each, write a ``videos`` dataset.

Each video is opened and its whole video stream demuxed (not decoded) to count its frames exactly;
probing runs in a few threads because it mostly waits on storage. A video that FFmpeg cannot read
keeps its row, with the problem in ``status``/``error``: the other videos go on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyarrow as pa

from dl3d.config import opt
from dl3d.data import DatasetWriter, to_table
from dl3d.data.video_tables import VIDEOS
from dl3d.video.decode import DEFAULT_IMAGE_FPS, VideoInfo, VideoRef, probe_video
from dl3d.video.sources import VideoSource, list_video_sources


@dataclass
class IngestVideosConfig:
    """How video files become a ``videos`` dataset."""

    videos_per_shard: int = opt(4, "videos per Parquet shard (the unit of work of pose detect and render)")
    embed: bool = opt(False, "store each video's bytes in the dataset (small clips; default: store its URL)")
    image_fps: float = opt(DEFAULT_IMAGE_FPS, "frame rate of a folder of numbered images")
    focal_length: float | None = opt(None, "focal length in pixels for every video (default: null, "
                                           "and `dl3d pose detect` uses its own default)")
    threads: int = opt(4, "videos probed at once")

    def __post_init__(self):
        if self.videos_per_shard < 1:
            raise ValueError(f"videos_per_shard must be >= 1, got {self.videos_per_shard}")
        if self.image_fps <= 0:
            raise ValueError(f"image_fps must be > 0, got {self.image_fps}")
        if self.focal_length is not None and self.focal_length <= 0:
            raise ValueError(f"focal_length must be > 0, got {self.focal_length}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@dataclass
class IngestVideosReport:
    output_url: str
    videos: int = 0
    frames: int = 0
    shards: int = 0
    bad: dict[str, str] = field(default_factory=dict)
    """Video id -> status and error, for every video whose status is not ok."""

    def summary(self) -> str:
        line = f"{self.videos} videos, {self.frames} frames in {self.shards} shards at {self.output_url}"
        if self.bad:
            line += f"; {len(self.bad)} not decodable (kept as rows with their status):"
            line += "".join(f"\n  {vid}: {why}" for vid, why in sorted(self.bad.items()))
        return line

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def probe_source(source: VideoSource, cfg: IngestVideosConfig, storage_options: dict[str, Any] | None = None
                 ) -> tuple[VideoSource, VideoInfo, bytes | None]:
    """Probe one video; with ``cfg.embed`` its bytes are read once and probed from memory."""
    data = None
    if cfg.embed and source.frame_files is None:
        from dl3d.data import fs as fsx

        fs, path = fsx.resolve(source.url, storage_options)
        try:
            data = fs.cat_file(path)
        except OSError as exc:
            return source, VideoInfo("unreadable", error=f"{type(exc).__name__}: {exc}"), None
    info = probe_video(VideoRef(source.id, url=source.url, data=data, frame_files=source.frame_files), storage_options)
    if source.frame_files is not None and info.status == "ok":
        info = replace(info, fps=cfg.image_fps)
    if cfg.focal_length is not None:
        info = replace(info, focal_length=cfg.focal_length)
    return source, info, data


def videos_table(items: list[tuple[VideoSource, VideoInfo, bytes | None]]) -> pa.Table:
    """The ``videos`` rows of probed sources, in the given order."""
    cols: dict[str, list] = {c.name: [] for c in VIDEOS.columns}
    for source, info, data in items:
        cols["id"].append(source.id)
        cols["url"].append(source.url)
        cols["data"].append(data)
        cols["frame_files"].append(list(source.frame_files) if source.frame_files is not None else None)
        for name in ("container", "codec", "width", "height", "fps", "num_frames", "rotation", "focal_length",
                     "status", "error"):
            cols[name].append(getattr(info, name))
    return to_table(VIDEOS, cols)


def ingest_videos(input_url: str, output_url: str, cfg: IngestVideosConfig | None = None,
                  storage_options: dict[str, Any] | None = None) -> IngestVideosReport:
    """List, probe and write every video under ``input_url`` as a ``videos`` dataset at ``output_url``."""
    cfg = cfg or IngestVideosConfig()
    sources = list_video_sources(input_url, storage_options)
    with ThreadPoolExecutor(cfg.threads) as pool:
        items = list(pool.map(lambda s: probe_source(s, cfg, storage_options), sources))
    writer = DatasetWriter(output_url, VIDEOS, produced_by={"command": "dl3d ingest videos", "input": input_url,
                                                            "config": asdict(cfg)},
                           storage_options=storage_options)
    report = IngestVideosReport(output_url)
    for index, start in enumerate(range(0, len(items), cfg.videos_per_shard)):
        writer.write_shard(index, videos_table(items[start:start + cfg.videos_per_shard]))
    report.videos = len(items)
    report.frames = sum(info.num_frames for _, info, _ in items if info.status == "ok")
    report.bad = {s.id: f"{info.status}: {info.error}" for s, info, _ in items if info.status != "ok"}
    meta = writer.close(num_videos=len(items), bad_videos=len(report.bad))
    report.shards = meta["num_shards"]
    return report
