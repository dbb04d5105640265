"""Ingest: OpenPose BODY_25 / BODY_25B / COCO-18 and COCO-17 / PoseTrack JSON into ``keypoints2d``;
RealEstate10K into ``view_pairs``.

``dl3d ingest openpose|coco`` wraps :func:`ingest_openpose` and :func:`ingest_coco`;
:func:`write_openpose_video` writes OpenPose-format files for synthetic benchmark data.
"""

from dl3d.ingest.coco import CocoFormatError, ingest_coco
from dl3d.ingest.config import IngestConfig
from dl3d.ingest.report import BaseIngestReport, IngestReport, SkippedInput
from dl3d.ingest.sizes import VideoSize, read_sizes
from dl3d.ingest.realestate10k import IngestRealEstateConfig, RealEstateIngestReport, ingest_realestate10k
from dl3d.ingest.openpose import OpenPoseFormatError, ingest_openpose, parse_openpose_frame, write_openpose_video
from dl3d.ingest.tracking import associate_tracks, track_rows
from dl3d.ingest.writer import INGEST_ERRORS, VideoKeypoints, keypoints_table, write_keypoint_dataset

__all__ = [
    "BaseIngestReport", "INGEST_ERRORS", "CocoFormatError", "VideoSize", "read_sizes", "IngestConfig",
    "IngestRealEstateConfig", "IngestReport", "OpenPoseFormatError",
    "RealEstateIngestReport", "SkippedInput", "ingest_realestate10k",
    "VideoKeypoints", "associate_tracks", "ingest_coco", "ingest_openpose", "keypoints_table",
    "parse_openpose_frame", "track_rows", "write_keypoint_dataset", "write_openpose_video",
]
