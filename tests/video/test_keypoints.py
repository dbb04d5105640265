"""BlazePose 33 -> COCO-17 / BODY_25 by joint name, joint by joint."""

from __future__ import annotations

import numpy as np
import pytest

from dl3d.video.keypoints import BLAZEPOSE_33, BODY_25, COCO_17, DERIVE_MIN_VISIBILITY, blazepose_to


def _landmarks(n: int = 2) -> np.ndarray:
    """(n, 33, 3): landmark i of frame f at x = 100 f + i, y = 1000 + 10 i, visibility 0.6 + i / 100."""
    kp = np.zeros((n, 33, 3), np.float32)
    for f in range(n):
        for i in range(33):
            kp[f, i] = (100 * f + i, 1000 + 10 * i, 0.6 + i / 100)
    return kp


def test_blazepose_names_are_mediapipes_landmark_enum():
    from mediapipe.python.solutions.pose import PoseLandmark

    assert BLAZEPOSE_33 == tuple(lm.name.lower() for lm in PoseLandmark)


@pytest.mark.parametrize("name", COCO_17)
def test_every_coco_joint_is_the_blazepose_landmark_of_that_name(name):
    kp = _landmarks()
    out = blazepose_to(kp, "coco17")
    np.testing.assert_array_equal(out[:, COCO_17.index(name)], kp[:, BLAZEPOSE_33.index(name)])


BODY_25_COPIED = {
    "Nose": "nose", "RShoulder": "right_shoulder", "RElbow": "right_elbow", "RWrist": "right_wrist",
    "LShoulder": "left_shoulder", "LElbow": "left_elbow", "LWrist": "left_wrist", "RHip": "right_hip",
    "RKnee": "right_knee", "RAnkle": "right_ankle", "LHip": "left_hip", "LKnee": "left_knee",
    "LAnkle": "left_ankle", "REye": "right_eye", "LEye": "left_eye", "REar": "right_ear", "LEar": "left_ear",
    "LBigToe": "left_foot_index", "LHeel": "left_heel", "RBigToe": "right_foot_index", "RHeel": "right_heel",
}


@pytest.mark.parametrize("name", list(BODY_25_COPIED))
def test_body25_copied_joints(name):
    kp = _landmarks()
    out = blazepose_to(kp, "body25")
    np.testing.assert_array_equal(out[:, BODY_25.index(name)], kp[:, BLAZEPOSE_33.index(BODY_25_COPIED[name])])


@pytest.mark.parametrize("name, parents", [("Neck", ("left_shoulder", "right_shoulder")),
                                           ("MidHip", ("left_hip", "right_hip"))])
def test_body25_derived_joints_are_midpoints_only_when_both_parents_are_visible(name, parents):
    kp = _landmarks()
    a, b = (BLAZEPOSE_33.index(p) for p in parents)
    j = BODY_25.index(name)
    out = blazepose_to(kp, "body25")
    np.testing.assert_allclose(out[:, j, :2], (kp[:, a, :2] + kp[:, b, :2]) / 2)
    np.testing.assert_allclose(out[:, j, 2], np.minimum(kp[:, a, 2], kp[:, b, 2]))
    kp[1, b, 2] = DERIVE_MIN_VISIBILITY - 0.01  # one parent not visible in frame 1
    out = blazepose_to(kp, "body25")
    np.testing.assert_array_equal(out[1, j], 0.0)
    assert out[0, j, 2] > 0


def test_body25_small_toes_are_missing_and_every_joint_is_accounted_for():
    out = blazepose_to(_landmarks(), "body25")
    for name in ("LSmallToe", "RSmallToe"):
        np.testing.assert_array_equal(out[:, BODY_25.index(name)], 0.0)
    assert len(BODY_25_COPIED) + 2 + 2 == 25


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"expected BlazePose keypoints of shape \(\.\.\., 33, 3\), got \(2, 17, 3\)"):
        blazepose_to(np.zeros((2, 17, 3)), "coco17")
    with pytest.raises(ValueError, match="expected a keypoint format in"):
        blazepose_to(np.zeros((1, 33, 3)), "body18")


def test_another_detector_maps_through_the_keypoint_formats_module():
    """A detector that is not BlazePose declares its FORMATS name; to_format converts by joint name."""
    from dl3d.video.pose import PoseDetector

    class CocoDetector(PoseDetector):
        keypoint_names = COCO_17
        keypoint_format = "coco17"

        def detect(self, frames):
            return np.zeros((len(frames), 17, 3), np.float32)

    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 0] = np.arange(17)
    kp[0, :, 2] = 1.0
    out = CocoDetector().to_format(kp, "body25")
    assert out.shape == (1, 25, 3) and out.dtype == np.float32
    assert out[0, BODY_25.index("LKnee"), 0] == COCO_17.index("left_knee")
    assert out[0, BODY_25.index("MidHip"), 0] == (COCO_17.index("left_hip") + COCO_17.index("right_hip")) / 2
