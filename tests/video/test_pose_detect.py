"""BlazePose on a real photograph (see ASSETS.md): COCO-17 keypoints near hand-checked positions."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dl3d.video.keypoints import COCO_17, blazepose_to

# Read off grace_hopper.jpg (512 x 600) on a 10-pixel grid: pixel x right, y down. Left/right are
# the person's own (her left eye is on the image's right).
HAND_CHECKED = {
    "nose": (266, 240),            # tip of the nose
    "left_eye": (305, 187),        # pupil
    "right_eye": (222, 190),       # pupil
    "left_shoulder": (462, 420),   # joint centre under the jacket, below the shoulder's top contour
    "right_shoulder": (85, 420),
}
TOLERANCE_PX = {"nose": 20.0, "left_eye": 20.0, "right_eye": 20.0, "left_shoulder": 30.0, "right_shoulder": 30.0}
"""Face: a quarter of the 83-px distance between the pupils; shoulders: 8% of the 377-px shoulder width."""


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import matplotlib
    from PIL import Image

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def detector():
    from dl3d.video.pose import build_detector

    d = build_detector("blazepose", static_image_mode=True)
    yield d
    d.close()


def test_coco_keypoints_are_within_tolerance_of_hand_checked_positions(photo, detector):
    assert photo.shape == (600, 512, 3)
    coco = blazepose_to(detector.detect(photo[None]), "coco17")[0]
    for name, (x, y) in HAND_CHECKED.items():
        px, py, conf = coco[COCO_17.index(name)]
        err = float(np.hypot(px - x, py - y))
        assert err <= TOLERANCE_PX[name], f"{name}: detected ({px:.1f}, {py:.1f}), hand-checked ({x}, {y}): {err:.1f} px"
        assert conf > 0.9, f"{name} visibility {conf:.3f}"
    # the person's left is on the image's right: a mirrored detection would fail here
    assert coco[COCO_17.index("left_eye"), 0] > coco[COCO_17.index("right_eye"), 0]


def test_mirrored_photo_moves_the_keypoints_with_it(photo, detector):
    coco = blazepose_to(detector.detect(photo[None, :, ::-1].copy()), "coco17")[0]
    x, y = HAND_CHECKED["nose"]
    nose = coco[COCO_17.index("nose")]
    assert np.hypot(nose[0] - (511 - x), nose[1] - y) <= TOLERANCE_PX["nose"]


def test_a_frame_without_a_person_is_all_zeros(detector):
    blank = np.full((2, 240, 320, 3), 127, np.uint8)
    out = detector.detect(blank)
    assert out.shape == (2, 33, 3)
    np.testing.assert_array_equal(out, 0.0)


def test_frames_must_be_a_batch_of_rgb_uint8(detector):
    with pytest.raises(ValueError, match=r"expected frames of shape \(F, H, W, 3\) uint8 RGB, got \(600, 512, 3\)"):
        detector.detect(np.zeros((600, 512, 3), np.uint8))
