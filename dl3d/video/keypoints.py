"""BlazePose's 33 landmarks and their mapping, joint by joint and by NAME, to COCO-17 and OpenPose BODY_25.

BlazePose (MediaPipe Pose) landmark order and names are those of ``mediapipe.solutions.pose.PoseLandmark``
(lower-cased). Its ``left``/``right`` are the person's own, as in COCO and OpenPose.

What the mapping does with each target joint:

- **copied**: the BlazePose landmark of the same body point (COCO-17: all 17; BODY_25: nose, eyes,
  ears, shoulders, elbows, wrists, hips, knees, ankles).
- **renamed** (BODY_25 feet): ``LBigToe`` <- ``left_foot_index`` (BlazePose's foot tip, between the big
  and second toe), ``LHeel`` <- ``left_heel``; the same on the right.
- **derived**: ``Neck`` = midpoint of the two shoulders, ``MidHip`` = midpoint of the two hips, each
  only when BOTH parents are visible (visibility >= ``DERIVE_MIN_VISIBILITY``); its confidence is the
  smaller parent visibility. Note: OpenPose's neck lies a little above the shoulder midpoint and its
  MidHip is OpenPose's own pelvis estimate; the midpoints are the conventional stand-ins.
- **missing**: ``LSmallToe`` and ``RSmallToe`` (BlazePose has no small toe): confidence 0, x = y = 0,
  exactly as OpenPose writes an undetected keypoint, so fitting ignores them.

Confidence is BlazePose's per-landmark ``visibility`` in [0, 1]. Pixel coordinates: x right, y down,
origin at the top-left corner of the image the detector saw.
"""

from __future__ import annotations

import numpy as np

from dl3d.keypoints.formats import get_format

BLAZEPOSE_33: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
"""BlazePose landmark names in output order (``PoseLandmark`` enum, lower-cased)."""

COCO_17: tuple[str, ...] = get_format("coco17").joints
"""COCO-17 keypoint names in order (the record in ``dl3d.keypoints.formats``, the one home of formats)."""

BODY_25: tuple[str, ...] = get_format("body25").spelled
"""OpenPose BODY_25 keypoint names in order, as OpenPose spells them (``dl3d.keypoints.formats``)."""

DERIVE_MIN_VISIBILITY = 0.5
"""A derived joint exists only when both parents have at least this visibility (MediaPipe's own
drawing threshold for a visible landmark)."""

# BODY_25 name -> BlazePose name (copied / renamed), a pair of names (derived midpoint) or None (missing).
BODY_25_FROM_BLAZEPOSE: dict[str, str | tuple[str, str] | None] = {
    "Nose": "nose", "Neck": ("left_shoulder", "right_shoulder"),
    "RShoulder": "right_shoulder", "RElbow": "right_elbow", "RWrist": "right_wrist",
    "LShoulder": "left_shoulder", "LElbow": "left_elbow", "LWrist": "left_wrist",
    "MidHip": ("left_hip", "right_hip"),
    "RHip": "right_hip", "RKnee": "right_knee", "RAnkle": "right_ankle",
    "LHip": "left_hip", "LKnee": "left_knee", "LAnkle": "left_ankle",
    "REye": "right_eye", "LEye": "left_eye", "REar": "right_ear", "LEar": "left_ear",
    "LBigToe": "left_foot_index", "LSmallToe": None, "LHeel": "left_heel",
    "RBigToe": "right_foot_index", "RSmallToe": None, "RHeel": "right_heel",
}
COCO_17_FROM_BLAZEPOSE: dict[str, str | tuple[str, str] | None] = {name: name for name in COCO_17}

TARGETS: dict[str, tuple[tuple[str, ...], dict[str, str | tuple[str, str] | None]]] = {
    "coco17": (COCO_17, COCO_17_FROM_BLAZEPOSE),
    "body25": (BODY_25, BODY_25_FROM_BLAZEPOSE),
}
"""keypoint_format -> (target names in order, target name -> BlazePose source)."""


def blazepose_to(keypoints: np.ndarray, fmt: str, min_visibility: float = DERIVE_MIN_VISIBILITY) -> np.ndarray:
    """Map BlazePose landmarks to ``fmt`` ('coco17' or 'body25') by joint name.

    Args:
        keypoints: (..., 33, 3) BlazePose x, y (pixels) and visibility in [0, 1].
        fmt: target keypoint format.
        min_visibility: both parents of a derived joint need at least this visibility.

    Returns:
        (..., J, 3) float32 in the target order (J = 17 or 25); missing joints and derived joints
        whose parents are not both visible are (0, 0, 0).
    """
    if fmt not in TARGETS:
        raise ValueError(f"expected a keypoint format in {sorted(TARGETS)}, got {fmt!r}")
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape[-2:] != (len(BLAZEPOSE_33), 3):
        raise ValueError(f"expected BlazePose keypoints of shape (..., 33, 3), got {kp.shape}")
    names, sources = TARGETS[fmt]
    index = {n: i for i, n in enumerate(BLAZEPOSE_33)}
    out = np.zeros(kp.shape[:-2] + (len(names), 3), np.float32)
    for j, name in enumerate(names):
        src = sources[name]
        if src is None:
            continue
        if isinstance(src, str):
            out[..., j, :] = kp[..., index[src], :]
            continue
        a, b = kp[..., index[src[0]], :], kp[..., index[src[1]], :]
        conf = np.minimum(a[..., 2], b[..., 2])
        ok = conf >= min_visibility
        out[..., j, :2] = np.where(ok[..., None], (a[..., :2] + b[..., :2]) / 2, 0.0)
        out[..., j, 2] = np.where(ok, conf, 0.0)
    return out
