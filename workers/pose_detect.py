"""``dl3d pose detect``: 2D body keypoints for every frame of every video -> a ``keypoints2d`` dataset.

Output rows are those of ``keypoints2d`` (``dl3d smpl fit`` reads them unchanged), one per
(video, track, frame), plus ``fps``, ``status`` and ``error``. Every frame is accounted for:

- ``ok``: a person was found; ``no_person``: none (all keypoints confidence 0);
- ``decode_error``: the frame could not be decoded (the frames before it keep their rows; the
  frames the videos dataset counted after it get this status);
- a video the ingest could not read at all (``unreadable``, ``no_video_stream``, ``no_frames``) has
  no frame and no image size: it gets no row (``dl3d smpl fit`` needs an image size per row), and
  its reason stays in the videos dataset's ``status``/``error``. A video that ingest read but that
  fails now (changed or removed since) gets ``decode_error`` rows for the frames ingest counted.

Frames are turned upright by the video's display rotation first (``--no-upright`` keeps them as
stored); image sizes and keypoints are those of the frames the detector saw.
BlazePose follows one person: ``track`` is always 0 (kept so a multi-person detector fits in).
The focal length of each row is ``--focal-length``, else the videos dataset's, else the image
diagonal in pixels (written into the row, so the fit uses the same value).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dl3d.data import JobOutput, read_table, to_table
from dl3d.data.keypoint_tables import KEYPOINTS2D
from dl3d.data.video_tables import VIDEOS
from dl3d.keypoints.formats import get_format
from dl3d.video.decode import iter_frame_batches
from dl3d.video.rows import VideoRow, decode_videos_table
from dl3d.workers.base import ShardTask, ShardWorker
from dl3d.workers.video_config import PoseDetectConfig

DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError)


def _decode_errors() -> tuple[type[BaseException], ...]:
    import av

    return DECODE_ERRORS + (av.error.FFmpegError,)


def default_focal_length(width: int, height: int) -> float:
    """The documented default focal length: the image diagonal in pixels."""
    return float(math.hypot(width, height))


class PoseDetectWorker(ShardWorker):
    """Detects 2D keypoints in every frame of the videos of a ``videos`` shard (one model per worker)."""

    config_cls = PoseDetectConfig
    job_kind = "pose_detect"

    @classmethod
    def preflight(cls, config: PoseDetectConfig) -> None:
        from dl3d.video.pose import _mediapipe_pose

        if config.detector == "blazepose":
            _mediapipe_pose()  # a missing mediapipe is a clear error before any worker starts

    def setup(self) -> None:
        from dl3d.video.pose import build_detector

        c = self.config
        self.detector = build_detector(c.detector, min_detection_confidence=c.min_detection_confidence,
                                       min_tracking_confidence=c.min_tracking_confidence)

    def run_shard(self, task: ShardTask, out: JobOutput) -> int:
        table = read_table(task.shard.url, VIDEOS)
        rows: dict[str, list] = {k: [] for k in ("video", "frame", "keypoints", "width", "height", "focal", "fps",
                                                "status", "error")}
        for video in decode_videos_table(table, task.shard.url):
            self._detect_video(video, rows)
        n = len(rows["frame"])
        columns = {
            "id": [f"{v}/0/{f:06d}" for v, f in zip(rows["video"], rows["frame"])], "video": rows["video"],
            "track": np.zeros(n, np.int64), "frame": rows["frame"],
            "keypoints": np.asarray(rows["keypoints"], np.float32).reshape(n, -1, 3),
            "keypoint_format": [self.config.keypoint_format] * n, "image_width": rows["width"],
            "image_height": rows["height"], "focal_length": rows["focal"], "fps": rows["fps"],
            "status": rows["status"], "error": rows["error"],
        }
        out.write_part(task.shard.index, to_table(KEYPOINTS2D, columns))
        return n

    def _detect_video(self, video: VideoRow, rows: dict[str, list]) -> None:
        joints = get_format(self.config.keypoint_format).num_joints
        focal = self.config.focal_length or video.focal_length

        def add(frame: int, kp: np.ndarray, width, height, status: str, error: str | None) -> None:
            rows["video"].append(video.id)
            rows["frame"].append(frame)
            rows["keypoints"].append(kp)
            rows["width"].append(width)
            rows["height"].append(height)
            rows["focal"].append(focal if focal or width is None else default_focal_length(width, height))
            rows["fps"].append(video.fps)
            rows["status"].append(status)
            rows["error"].append(error)

        missing = np.zeros((joints, 3), np.float32)
        rotation = video.rotation if self.config.upright else 0
        if rotation % 180:  # the frames are turned on their side: so is the image size of decode_error rows
            video = dataclasses.replace(video, width=video.height, height=video.width)
        if not video.usable:
            return
        self.detector.reset()
        frame = 0
        try:
            for batch in iter_frame_batches(video.ref, self.config.batch_size, rotation=rotation):
                kp = self.detector.to_format(self.detector.detect(batch), self.config.keypoint_format)
                h, w = batch.shape[1:3]
                for k in kp:
                    found = bool((k[:, 2] > 0).any())
                    add(frame, k if found else missing, w, h, "ok" if found else "no_person", None)
                    frame += 1
        except _decode_errors() as exc:
            error = f"decoding stopped at frame {frame}: {type(exc).__name__}: {exc}"
            for f in range(frame, max(video.num_frames, frame + 1)):
                add(f, missing, video.width, video.height, "decode_error", error)
