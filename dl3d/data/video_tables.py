"""Dataset kind ``videos``: one row per video (a video file, or a folder of numbered images).

Written by ``dl3d ingest videos``; read by ``dl3d pose detect`` and ``dl3d smpl render``.
A row points at its video (``url``) or holds it (``data``, when ingested with ``--embed``), and says
what decoding found. A video that could not be decoded keeps its row with a non-``ok`` ``status``
and the reason in ``error``, so nothing given to ingest disappears silently.
"""

from __future__ import annotations

import pyarrow as pa

from dl3d.data.schema import Column, TableSchema

VIDEO_STATUSES = ("ok", "unreadable", "no_video_stream", "truncated", "no_frames")
"""``status`` values: decodable; not a video FFmpeg can open; a container without a video stream;
fewer frames decodable than the container declares; no frame at all."""

VIDEOS = TableSchema(
    kind="videos",
    version=1,
    doc="Videos, one row per video: where it is (or its bytes) and what decoding found.",
    columns=(
        Column("id", pa.string(), doc="video id: path relative to the ingested root, without extension"),
        Column("url", pa.string(), required=False,
               doc="the video file's URL; for a folder of numbered images, the folder's URL"),
        Column("data", pa.binary(), required=False, doc="the video file's bytes (ingest --embed); null otherwise"),
        Column("frame_files", pa.list_(pa.string()), required=False,
               doc="for a folder of numbered images: the frames' URLs in frame order; null for a video file"),
        Column("container", pa.string(), required=False,
               doc="FFmpeg's container name (e.g. 'mov,mp4,m4a,3gp,3g2,mj2', 'avi') or 'images'"),
        Column("codec", pa.string(), required=False, doc="video codec name (e.g. 'h264', 'mpeg4', 'png')"),
        Column("width", pa.int64(), doc="decoded frame width, pixels (before rotation); null when unreadable"),
        Column("height", pa.int64(), doc="decoded frame height, pixels (before rotation); null when unreadable"),
        Column("fps", pa.float64(), doc="frames per second (the stream's average rate); null when unreadable"),
        Column("num_frames", pa.int64(), doc="frames found by demuxing the whole stream (exact); 0 when unreadable"),
        Column("rotation", pa.int64(), doc="display rotation in degrees (0, 90, 180, 270) from the stream's display "
                                          "matrix (degrees counter-clockwise for display, as PyAV's frame.rotation gives it); "
                                          "stored frames are unrotated, pose detect and render turn them upright"),
        Column("focal_length", pa.float64(), required=False,
               doc="pixels, when the container says (rare) or ingest was given one; null otherwise"),
        Column("status", pa.string(), doc="'ok' or why the video cannot be used: " + ", ".join(VIDEO_STATUSES[1:])),
        Column("error", pa.string(), required=False, doc="the decoder's message for a non-ok status"),
    ),
)
