"""Options of the video batch jobs (``dl3d pose detect``, ``dl3d smpl render``), free of torch so
their ``--help`` builds without loading a model library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt

DEFAULT_FOCAL = "the image diagonal in pixels (about a 53 degree field of view on the diagonal)"


@dataclass
class PoseDetectConfig:
    """Options of the 2D pose detection job."""

    detector: Literal["blazepose"] = opt("blazepose", "2D pose detector (BlazePose: one person per video, "
                                                      "models shipped in the mediapipe wheel)")
    keypoint_format: Literal["body25", "coco17"] = opt("body25", "keypoint layout written (both fit with `dl3d smpl fit`)")
    focal_length: float | None = opt(None, "focal length in pixels for every video (default: the videos dataset's, "
                                           f"else {DEFAULT_FOCAL})")
    batch_size: int = opt(32, "frames decoded and handed to the detector at once")
    upright: bool = opt(True, "turn frames by the video's display rotation first (phone videos), as a player "
                              "shows them; keypoints and image size are then those of the turned frames")
    min_detection_confidence: float = opt(0.5, "detector score needed to start following a person")
    min_tracking_confidence: float = opt(0.5, "landmark score needed to keep tracking instead of re-detecting")

    def __post_init__(self):
        if self.focal_length is not None and self.focal_length <= 0:
            raise ValueError(f"focal_length must be > 0, got {self.focal_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class SmplRenderConfig:
    """Options of the fit overlay render job."""

    videos: str = opt(help="the videos dataset the fit came from (`dl3d ingest videos`): frames are read from it")
    model: str = opt(help="the SMPL-format body model file the fit used (.pkl/.npz, any URL)")
    side_view: bool = opt(False, "also draw the mesh seen from the side, to the right of each frame")
    alpha: float = opt(0.7, "opacity of the mesh over the frame")
    crf: int = opt(20, "libx264 quality (0 = lossless, 51 = worst)")
    batch_size: int = opt(16, "frames rendered at once")
    upright: bool = opt(True, "turn frames by the video's display rotation first; must match the pose detect "
                              "run the fit came from (both default to on)")

    def __post_init__(self):
        if not self.videos:
            raise ValueError("videos: give the URL of the videos dataset the fit came from")
        if not self.model:
            raise ValueError("model: give the path of the SMPL-format body model file the fit used")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
