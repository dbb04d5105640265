"""The keypoint-format records: SMPL correspondence, index sets, conversion by joint name."""

from __future__ import annotations

import numpy as np
import pytest

from dl3d.keypoints import FORMATS, SMPL_JOINT_OF, convert, get_format, joint_alias

# smplx SMPL joints 0..23, then nose, reye, leye, rear, lear, LBigToe, LSmallToe, LHeel, RBigToe, RSmallToe, RHeel.
# BODY_25 <- SMPL as FIELD-NOTES.md states it (smplify-x convention); COCO-17 as the fitting used before.
BODY25 = (24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34)
COCO17 = (24, 26, 25, 28, 27, 16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8)


def test_smpl_correspondence_matches_the_published_tables():
    assert FORMATS["body25"].smpl_index == BODY25 and all(FORMATS["body25"].fitted)
    assert FORMATS["coco17"].smpl_index == COCO17
    # BODY_25B (OpenPose experimental model): COCO order, then UpperNeck, HeadTop, the feet.
    b = FORMATS["body25b"]
    assert b.smpl[:17] == COCO17 and b.smpl[17:19] == (None, None) and b.smpl[19:] == BODY25[19:]
    assert b.missing_for_fit == ("upper_neck", "head_top")
    p = FORMATS["posetrack"]
    assert p.joints[:3] == ("nose", "head_bottom", "head_top") and p.smpl[1:3] == (None, None)
    assert p.smpl[3:] == COCO17[3:]
    c18 = FORMATS["coco18"]
    assert c18.smpl == BODY25[:8] + BODY25[9:19]  # BODY_25 without MidHip and the feet
    assert len(set(SMPL_JOINT_OF.values())) == len(SMPL_JOINT_OF) and max(SMPL_JOINT_OF.values()) == 34


@pytest.mark.parametrize("name, torso, face, hips", [
    ("body25", (5, 2, 12, 9), (0, 15, 16, 17, 18), (8, 9, 12)),
    ("coco17", (5, 6, 11, 12), (0, 1, 2, 3, 4), (11, 12)),
    ("body25b", (5, 6, 11, 12), (0, 1, 2, 3, 4), (11, 12)),
    ("posetrack", (5, 6, 11, 12), (0, 3, 4), (11, 12)),  # head_bottom/top are not face points of SMPL
    ("coco18", (5, 2, 11, 8), (0, 14, 15, 16, 17), (8, 11)),
])
def test_index_sets(name, torso, face, hips):
    f = get_format(name)
    assert (f.torso, f.face, f.hips) == (torso, face, hips)


def test_spellings_map_to_the_canonical_names():
    for f in FORMATS.values():
        assert tuple(joint_alias(s) for s in f.spelled) == f.joints
    assert joint_alias("Left Shoulder") == "left_shoulder" and joint_alias("RBigToe") == "right_big_toe"


def test_coco18_to_body25_derives_mid_hip_and_leaves_the_feet_missing():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 500, (2, 18, 2)), rng.uniform(0.5, 1, (2, 18, 1))], -1)
    kp[1, 8, 2] = 0.0  # person 1: right hip missing -> no MidHip
    out = convert(kp, "coco18", "body25")
    assert out.shape == (2, 25, 3)
    b25, c18 = FORMATS["body25"], FORMATS["coco18"]
    for name in c18.joints:
        np.testing.assert_array_equal(out[:, b25.index(name)], kp[:, c18.index(name)])
    rh, lh = c18.index("right_hip"), c18.index("left_hip")
    np.testing.assert_allclose(out[0, 8, :2], (kp[0, rh, :2] + kp[0, lh, :2]) / 2)
    assert out[0, 8, 2] == min(kp[0, rh, 2], kp[0, lh, 2])
    assert (out[1, 8] == 0).all() and (out[:, 19:] == 0).all()
    assert (convert(kp, "coco18", "body25", derive=False)[:, 8] == 0).all()


def test_body25_coco17_round_trip_and_posetrack_without_eyes():
    rng = np.random.default_rng(1)
    kp = np.concatenate([rng.uniform(0, 500, (3, 25, 2)), rng.uniform(0.5, 1, (3, 25, 1))], -1)
    coco = convert(kp, "body25", "coco17")
    np.testing.assert_array_equal(coco, kp[:, [0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11]])
    back = convert(coco, "coco17", "body25")
    kept = [0, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    np.testing.assert_array_equal(back[:, kept], kp[:, kept])
    np.testing.assert_allclose(back[:, 1, :2], (kp[:, 2, :2] + kp[:, 5, :2]) / 2)  # neck from the shoulders
    pt = convert(FORMATS["posetrack"].num_joints * [[1.0, 2.0, 1.0]], "posetrack", "coco17")
    assert (pt[1:3] == 0).all() and (pt[[0, 3, 4, 16]] == [1.0, 2.0, 1.0]).all()


def test_errors_name_what_was_expected():
    with pytest.raises(ValueError, match=r"expected keypoints of shape \(\.\.\., 18, 3\) for 'coco18', got \(25, 3\)"):
        convert(np.zeros((25, 3)), "coco18", "body25")
    with pytest.raises(ValueError, match=r"expected a keypoint format in \[.*'posetrack'\], got 'h36m'"):
        get_format("h36m")
    with pytest.raises(ValueError, match="format 'coco17' has no joint 'neck'"):
        FORMATS["coco17"].index("neck")
