"""Dataset kind ``keypoints2d``: one row per (video, track, frame) of 2D body keypoints.

Written by ``dl3d ingest openpose|coco`` and ``dl3d data make smpl-video``; read by ``dl3d smpl fit``.
Pixel coordinates: x to the right, y down, origin at the top-left corner of the image.
A video's rows never straddle two shards (temporal terms need the whole sequence).
"""

from __future__ import annotations

import pyarrow as pa

from dl3d.data.schema import Column, TableSchema, tensor_type
from dl3d.keypoints.formats import FORMATS

NUM_KEYPOINTS: dict[str, int] = {name: f.num_joints for name, f in FORMATS.items()}
"""Joints per keypoint format (from ``dl3d.keypoints.formats``, the one home of formats)."""

KEYPOINTS2D = TableSchema(
    kind="keypoints2d",
    version=1,
    doc="2D body keypoints, one row per (video, track, frame).",
    columns=(
        Column("id", pa.string(), doc="'{video}/{track}/{frame:06d}'"),
        Column("video", pa.string(), doc="video (sequence) id"),
        Column("track", pa.int64(), doc="person track id within the video"),
        Column("frame", pa.int64(), doc="frame number within the video"),
        Column("keypoints", pa.list_(tensor_type((3,))), shape=(None, 3),
               doc="(J, 3): x, y in pixels, confidence in [0, 1]; 0 confidence = not detected; J from keypoint_format"),
        Column("keypoint_format", pa.string(), doc="a name in dl3d.keypoints.FORMATS: 'body25', 'body25b', 'coco17', 'posetrack', ..."),
        Column("image_width", pa.int64(), required=False, doc="pixels; null when unknown"),
        Column("image_height", pa.int64(), required=False, doc="pixels; null when unknown"),
        Column("focal_length", pa.float64(), required=False, doc="pixels; null when unknown"),
        Column("fps", pa.float64(), required=False, doc="frames per second of the video; null when unknown"),
        Column("status", pa.string(), required=False,
               doc="detection (dl3d pose detect): 'ok', 'no_person', 'decode_error' or the video's own status "
                   "(e.g. 'unreadable'); every non-ok row has zero-confidence keypoints"),
        Column("error", pa.string(), required=False, doc="the decoder's message for a non-ok status"),
    ),
)
