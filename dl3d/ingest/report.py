"""What an ingest read, wrote and skipped: one base for the keypoint and RealEstate10K reports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

INGEST_ERRORS = "_ingest_errors.json"
"""File in the output dataset listing the skipped inputs: ``[{"name": ..., "reason": ...}, ...]``."""


@dataclass
class SkippedInput:
    """An input file (or one record in it) that could not be used, and why."""

    name: str
    """File path, or ``path#annotation-id`` for one COCO annotation."""
    reason: str


@dataclass
class BaseIngestReport:
    """Counts shared by every ingest: where it wrote, how many shards, what it skipped, what it warns about.

    A subclass lists its own counts in ``_counts`` (one phrase each) and its output in ``_written``.
    """

    output_url: str
    shards: int = 0
    skipped: list[SkippedInput] = field(default_factory=list)
    """Inputs that could not be used, with the reason (also in ``_ingest_errors.json``)."""
    warnings: list[str] = field(default_factory=list)
    """Things the output holds that a user must know before using it (also in ``_dataset.json``)."""

    def _counts(self) -> list[str]:
        return []

    def _written(self) -> str:
        return ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line for the command line, then one ``warning:`` line per warning."""
        line = f"{', '.join(self._counts())} -> {self._written()} in {self.shards} shards at {self.output_url}"
        if self.skipped:
            line += f"; {len(self.skipped)} inputs skipped (see {INGEST_ERRORS})"
        return "\n".join([line] + [f"warning: {w}" for w in self.warnings])


@dataclass
class IngestReport(BaseIngestReport):
    """What a keypoint ingest (``dl3d ingest openpose|coco``) read and wrote."""

    videos: int = 0
    """Videos written."""
    frames: int = 0
    """Input frames read successfully."""
    rows: int = 0
    """Rows written (one per video, track and frame)."""
    tracks: int = 0
    """Person tracks written, over all videos."""
    keypoint_format: str = ""
    """Format of the rows written (a name in ``dl3d.keypoints.FORMATS``)."""
    format_reason: str = ""
    """How the input's format was chosen (declared names, the neck test, the user's option)."""
    people_without_keypoints: int = 0
    """Person records with no keypoint (an empty ``pose_keypoints_2d``, all confidences 0, a COCO
    annotation with every v = 0 or no ``keypoints``): left out, counted here."""
    rows_without_image_size: int = 0
    """Rows whose image size nothing supplied (``smpl fit`` then needs --image-width/--image-height)."""

    def _counts(self) -> list[str]:
        counts = [f"{self.videos} videos", f"{self.frames} frames", f"{self.tracks} tracks"]
        if self.people_without_keypoints:
            counts.append(f"{self.people_without_keypoints} people without keypoints left out")
        return counts

    def _written(self) -> str:
        return f"{self.rows} {self.keypoint_format} rows".replace("  ", " ")
