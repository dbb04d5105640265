"""Keypoint formats: one record per 2D keypoint layout, used by ingest, fitting, synthetic data and metrics.

A format is an ordered list of joints. Every joint has a canonical snake_case name shared by all
formats (``left_shoulder`` is the same point in OpenPose BODY_25, COCO-17 and PoseTrack), so
converting between formats is a lookup by name (:func:`convert`). A joint's SMPL correspondence is
looked up by name too (:data:`SMPL_JOINT_OF`): an index into smplx's 45-joint SMPL output (24 SMPL
joints, then the 11 keypoint vertices nose, reye, leye, rear, lear, LBigToe, LSmallToe, LHeel,
RBigToe, RSmallToe, RHeel). A joint without one (PoseTrack's ``head_top``, BODY_25B's
``upper_neck``) exists in the data but is not fitted: the fit gives it weight 0.

Conventions of the correspondence (the SMPLify-X one): OpenPose's neck, hips and MidHip are mapped
to SMPL's neck (12), hip (1, 2) and pelvis (0) joints although OpenPose hips sit lower and wider;
fitting down-weights the hips (``SmplifyConfig.hip_weight``).

Adding a format (for example a detector's ``blazepose33``) is one :class:`KeypointFormat` in
:data:`FORMATS` with its joints named in this vocabulary (new names are allowed: they simply have
no SMPL correspondence unless added to :data:`SMPL_JOINT_OF`). Pure Python and numpy: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = [
    "DERIVED_JOINTS", "FORMATS", "SMPL_JOINT_OF", "SYNTHETIC_PROXIES", "KeypointFormat", "convert", "get_format",
    "joint_alias",
]

SMPL_JOINT_OF: dict[str, int] = {
    "nose": 24, "neck": 12, "mid_hip": 0,
    "right_shoulder": 17, "right_elbow": 19, "right_wrist": 21,
    "left_shoulder": 16, "left_elbow": 18, "left_wrist": 20,
    "right_hip": 2, "right_knee": 5, "right_ankle": 8,
    "left_hip": 1, "left_knee": 4, "left_ankle": 7,
    "right_eye": 25, "left_eye": 26, "right_ear": 27, "left_ear": 28,
    "left_big_toe": 29, "left_small_toe": 30, "left_heel": 31,
    "right_big_toe": 32, "right_small_toe": 33, "right_heel": 34,
}
"""Canonical joint name -> index into smplx's 45-joint SMPL output (first 35 used)."""

DERIVED_JOINTS: dict[str, tuple[str, str]] = {
    "neck": ("left_shoulder", "right_shoulder"),
    "mid_hip": ("left_hip", "right_hip"),
}
"""Joints :func:`convert` may derive as the midpoint of two others (how OpenPose defines its neck and
MidHip from COCO's shoulders and hips when it builds its training data)."""

SYNTHETIC_PROXIES: dict[str, tuple[int, int, float]] = {
    "head_bottom": (12, 15, 1.2),
    "upper_neck": (12, 15, 0.9),
    "head_top": (12, 15, 3.1),
}
"""Where synthetic data places joints SMPL lacks: ``(a, b, t)`` = ``J[a] + t (J[b] - J[a])`` on the
smplx layout (12 = neck, 15 = head; t = 3.1 reaches the crown of dl3d's procedural body). Used only
to generate observations; the fit never uses these joints."""

_OPENPOSE_SPELLING = {
    "Nose": "nose", "Neck": "neck", "MidHip": "mid_hip", "UpperNeck": "upper_neck", "HeadTop": "head_top",
    "RShoulder": "right_shoulder", "RElbow": "right_elbow", "RWrist": "right_wrist",
    "LShoulder": "left_shoulder", "LElbow": "left_elbow", "LWrist": "left_wrist",
    "RHip": "right_hip", "RKnee": "right_knee", "RAnkle": "right_ankle",
    "LHip": "left_hip", "LKnee": "left_knee", "LAnkle": "left_ankle",
    "REye": "right_eye", "LEye": "left_eye", "REar": "right_ear", "LEar": "left_ear",
    "LBigToe": "left_big_toe", "LSmallToe": "left_small_toe", "LHeel": "left_heel",
    "RBigToe": "right_big_toe", "RSmallToe": "right_small_toe", "RHeel": "right_heel",
}


def joint_alias(name: str) -> str:
    """Canonical name of a joint as a file spells it: OpenPose's ``LShoulder``, COCO's
    ``left_shoulder``, ``Left Shoulder`` -> ``left_shoulder``; unknown names are lower-cased with
    spaces and dashes as underscores."""
    name = str(name).strip()
    if name in _OPENPOSE_SPELLING:
        return _OPENPOSE_SPELLING[name]
    return name.lower().replace(" ", "_").replace("-", "_")


@dataclass(frozen=True)
class KeypointFormat:
    """One 2D keypoint layout.

    name: the id stored in ``keypoints2d.keypoint_format``; title: what a person calls it;
    joints: canonical joint names in file order; spelled: the names as the format's own files or
    documentation spell them; derived: joint -> how dl3d derives it when converting into this
    format; note: what a user should know (missing joints, provenance).
    """

    name: str
    title: str
    joints: tuple[str, ...]
    spelled: tuple[str, ...] = ()
    derived: Mapping[str, str] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self):
        if len(set(self.joints)) != len(self.joints):
            raise ValueError(f"format {self.name!r}: joint names must be unique, got {self.joints}")
        if self.spelled and len(self.spelled) != len(self.joints):
            raise ValueError(f"format {self.name!r}: {len(self.spelled)} spelled names for {len(self.joints)} joints")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        """Position of a canonical joint name; ValueError naming the format's joints when absent."""
        try:
            return self.joints.index(joint)
        except ValueError:
            raise ValueError(f"format {self.name!r} has no joint {joint!r}; "
                             f"its joints: {', '.join(self.joints)}") from None

    def has(self, joint: str) -> bool:
        return joint in self.joints

    @property
    def smpl(self) -> tuple[int | None, ...]:
        """(J,) smplx 45-joint index of each joint, None where SMPL has no such point."""
        return tuple(SMPL_JOINT_OF.get(j) for j in self.joints)

    @property
    def fitted(self) -> tuple[bool, ...]:
        """(J,) whether the fit uses the joint (it has an SMPL correspondence)."""
        return tuple(s is not None for s in self.smpl)

    @property
    def smpl_index(self) -> tuple[int, ...]:
        """(J,) gather index into the smplx layout; 0 (pelvis) as a placeholder where ``fitted`` is
        False (those joints get weight 0)."""
        return tuple(0 if s is None else s for s in self.smpl)

    def _present(self, names: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(sorted(self.joints.index(n) for n in names if n in self.joints and n in SMPL_JOINT_OF))

    @property
    def torso(self) -> tuple[int, int, int, int]:
        """Indices of (left shoulder, right shoulder, left hip, right hip): camera initialisation."""
        return (self.index("left_shoulder"), self.index("right_shoulder"), self.index("left_hip"),
                self.index("right_hip"))

    @property
    def face(self) -> tuple[int, ...]:
        """Indices of the fitted nose, eyes and ears (they tell front from back in the camera stage)."""
        return self._present(("nose", "left_eye", "right_eye", "left_ear", "right_ear"))

    @property
    def hips(self) -> tuple[int, ...]:
        """Indices of the hip keypoints (``mid_hip``, ``left_hip``, ``right_hip``) the fit may down-weight."""
        return self._present(("mid_hip", "left_hip", "right_hip"))

    @property
    def missing_for_fit(self) -> tuple[str, ...]:
        """Joints present in the data that the fit ignores (no SMPL correspondence)."""
        return tuple(j for j, f in zip(self.joints, self.fitted) if not f)


_COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
           "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
           "right_knee", "left_ankle", "right_ankle")
_BODY25_SPELLED = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                   "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                   "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
_BODY25B_SPELLED = ("Nose", "LEye", "REye", "LEar", "REar", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist",
                    "RWrist", "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle", "UpperNeck", "HeadTop",
                    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
_COCO18_SPELLED = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee",
                   "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar")
_POSETRACK = ("nose", "head_bottom", "head_top") + _COCO17[3:]

FORMATS: dict[str, KeypointFormat] = {f.name: f for f in (
    KeypointFormat("body25", "OpenPose BODY_25", tuple(joint_alias(n) for n in _BODY25_SPELLED), _BODY25_SPELLED,
                   {"mid_hip": "midpoint of the hips (only when converted from COCO-18)"},
                   "OpenPose's default body model: 25 keypoints x, y, confidence = 75 numbers per person."),
    KeypointFormat("body25b", "OpenPose BODY_25B", tuple(joint_alias(n) for n in _BODY25B_SPELLED), _BODY25B_SPELLED,
                   note="OpenPose's experimental model (Pose2Sim): also 75 numbers, COCO order first, then "
                        "UpperNeck, HeadTop and the feet. UpperNeck and HeadTop are not fitted (SMPL has no such "
                        "joint)."),
    KeypointFormat("coco18", "OpenPose COCO-18", tuple(joint_alias(n) for n in _COCO18_SPELLED), _COCO18_SPELLED,
                   note="OpenPose's older COCO model (54 numbers); ingest converts it to body25: MidHip derived "
                        "from the hips, the feet missing (confidence 0)."),
    KeypointFormat("coco17", "COCO-17", _COCO17, _COCO17,
                   note="COCO person keypoints (51 numbers x, y, v per annotation)."),
    KeypointFormat("posetrack", "PoseTrack 2018", _POSETRACK, _POSETRACK,
                   note="COCO-17 with head_bottom and head_top in place of the eyes; the ears are never "
                        "annotated. head_bottom and head_top are not fitted."),
)}
"""Every keypoint format dl3d reads, by name."""


def get_format(name: str | KeypointFormat) -> KeypointFormat:
    """The record of a format name (a record is returned as is); ValueError listing the known names."""
    if isinstance(name, KeypointFormat):
        return name
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"expected a keypoint format in {sorted(FORMATS)}, got {name!r}") from None


def convert(keypoints: Any, src: str | KeypointFormat, dst: str | KeypointFormat, *, derive: bool = True) -> np.ndarray:
    """Keypoints of format ``src`` rearranged into format ``dst`` by joint name.

    keypoints: (..., J_src, 3) float, x, y pixels and confidence (0 = missing).
    Joints of ``dst`` that ``src`` has are copied; with ``derive``, a joint of
    :data:`DERIVED_JOINTS` that ``src`` lacks is the midpoint of its two source joints where both
    are confident (confidence: the smaller of the two); every other joint is missing (all zero).
    Returns (..., J_dst, 3) float64.
    """
    src, dst = get_format(src), get_format(dst)
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim < 2 or kp.shape[-2:] != (src.num_joints, 3):
        raise ValueError(f"expected keypoints of shape (..., {src.num_joints}, 3) for {src.name!r}, got {kp.shape}")
    out = np.zeros(kp.shape[:-2] + (dst.num_joints, 3))
    for j, name in enumerate(dst.joints):
        if src.has(name):
            out[..., j, :] = kp[..., src.index(name), :]
        elif derive and name in DERIVED_JOINTS and all(src.has(n) for n in DERIVED_JOINTS[name]):
            a, b = (kp[..., src.index(n), :] for n in DERIVED_JOINTS[name])
            both = (a[..., 2] > 0) & (b[..., 2] > 0)
            mid = np.concatenate([(a[..., :2] + b[..., :2]) / 2, np.minimum(a[..., 2:], b[..., 2:])], axis=-1)
            out[..., j, :] = np.where(both[..., None], mid, 0.0)
    return out
