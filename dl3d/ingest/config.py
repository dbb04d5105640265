"""Options and the summary of ``dl3d ingest openpose|coco``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt
from dl3d.ingest.report import IngestReport, SkippedInput

__all__ = ["IngestConfig", "IngestReport", "SkippedInput"]

INPUT_FORMATS = ("auto", "body25", "body25b", "coco18", "coco17", "posetrack")


@dataclass
class IngestConfig:
    """How keypoint files become a ``keypoints2d`` dataset."""

    videos_per_shard: int = opt(16, "whole videos per Parquet shard (a video never straddles two shards)")
    rows_per_shard: int | None = opt(None, "also start a new shard before a video that would take a shard past "
                                           "this many rows (a longer video gets a shard of its own)")
    image_width: int | None = opt(None, "image width in pixels, used where the input does not say "
                                        "(OpenPose JSON without images beside it)")
    image_height: int | None = opt(None, "image height in pixels, used where the input does not say")
    focal_length: float | None = opt(None, "focal length in pixels for every video; null in the table when unset")
    track_distance: float = opt(0.5, "largest mean keypoint distance, as a fraction of the person's bounding-box "
                                     "diagonal, at which a person without an id continues a track")
    track_max_gap: int = opt(10, "frames a track may go undetected and still be continued")
    min_confidence: float = opt(0.1, "keypoints below this confidence are ignored when matching people to tracks")
    min_track_length: int = opt(1, "drop tracks detected in fewer frames than this")
    video_key: Literal["auto", "vid_id", "folder", "image"] = opt(
        "auto", "what makes a video. COCO: auto = the images' vid_id, else the folder of file_name, else each "
                "image alone. OpenPose: auto = a folder is one video when its frame numbers are dense (at least "
                "half of the range between the first and last), else each file is a photo of its own; "
                "folder / image force one or the other")
    keypoint_format: Literal["auto", "body25", "body25b", "coco18", "coco17", "posetrack"] = opt(
        "auto", "layout of the input keypoints. OpenPose: auto = by the numbers per person (75: BODY_25 or "
                "BODY_25B, told apart by where the neck sits; 54: COCO-18, converted to body25); COCO: auto = by "
                "the keypoint names the categories declare (coco17 or posetrack)")
    images: str | None = opt(None, "COCO/PoseTrack: the folder (or URL) the images' file_name is relative to; "
                                   "their headers give the size of images whose record has no width/height "
                                   "(PoseTrack 2018 records have none)")
    sizes: str | None = opt(None, "CSV (video,width,height[,focal]) or JSON ({video: {width, height, focal}}) "
                                  "of per-video image sizes in pixels, for inputs without images beside them")

    def __post_init__(self):
        if self.videos_per_shard < 1:
            raise ValueError(f"videos_per_shard must be >= 1, got {self.videos_per_shard}")
        if self.rows_per_shard is not None and self.rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1 or None, got {self.rows_per_shard}")
        if (self.image_width is None) != (self.image_height is None):
            raise ValueError(f"give both image_width and image_height or neither, "
                             f"got {self.image_width} and {self.image_height}")
        if self.image_width is not None and (self.image_width < 1 or self.image_height < 1):
            raise ValueError(f"image size must be positive, got {self.image_width}x{self.image_height}")
        if self.focal_length is not None and not self.focal_length > 0:
            raise ValueError(f"focal_length must be > 0 pixels or None, got {self.focal_length}")
        if not self.track_distance >= 0:
            raise ValueError(f"track_distance must be >= 0, got {self.track_distance}")
        if self.track_max_gap < 0:
            raise ValueError(f"track_max_gap must be >= 0, got {self.track_max_gap}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.min_track_length < 1:
            raise ValueError(f"min_track_length must be >= 1, got {self.min_track_length}")
        if self.keypoint_format not in INPUT_FORMATS:
            raise ValueError(f"keypoint_format must be one of {', '.join(INPUT_FORMATS)}; got {self.keypoint_format!r}")
        if self.video_key not in ("auto", "vid_id", "folder", "image"):
            raise ValueError(f"video_key must be one of auto, vid_id, folder, image; got {self.video_key!r}")

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) in pixels, or None."""
        return None if self.image_width is None else (self.image_width, self.image_height)
