"""Which 2D keypoints are too far outside their image to be detections (checked at ingest and at fit).

A detector reports keypoints inside its image, or a little outside it for a body part it guesses
beyond the border. A keypoint more than ``MAX_OFFSCREEN`` image sizes outside the image (x below
``-k W`` or above ``(1 + k) W``, y likewise with H) is a corrupted number, not data: it is treated
as missing (confidence 0). When the image size is unknown, coordinates beyond ``MAX_ABS_PIXELS``
in absolute value are.

Works on numpy arrays and torch tensors alike.
"""

from __future__ import annotations

from typing import Any

MAX_OFFSCREEN = 1.0
"""How far outside the image a keypoint may lie, in image widths (x) and heights (y)."""
MAX_ABS_PIXELS = 1e6
"""Bound on |x| and |y| in pixels when the image size is unknown."""


def far_outside(xy: Any, width: Any = None, height: Any = None, k: float = MAX_OFFSCREEN) -> Any:
    """Mask of keypoints too far outside the image to be detections.

    xy: (..., J, 2) pixels, x right, y down, origin top-left (NaN compares False: not flagged here).
    width, height: pixels, scalars or broadcastable to (..., 1) (one per row), or None when unknown.
    k: allowed distance outside the image, in image sizes (``MAX_OFFSCREEN``).
    Returns (..., J) bool.
    """
    x, y = xy[..., 0], xy[..., 1]
    if width is None or height is None:
        return (abs(x) > MAX_ABS_PIXELS) | (abs(y) > MAX_ABS_PIXELS)
    return (x < -k * width) | (x > (1 + k) * width) | (y < -k * height) | (y > (1 + k) * height)


def drop_far_keypoints(keypoints: Any, width: Any = None, height: Any = None,
                       k: float = MAX_OFFSCREEN) -> tuple[Any, int]:
    """Keypoints with those :func:`far_outside` the image set to missing (x = y = confidence = 0).

    keypoints: (..., J, 3) x, y pixels and confidence (numpy or torch). Returns a new array of the same
    type and the number of keypoints dropped.
    """
    far = far_outside(keypoints, width, height, k)
    count = int(far.sum())
    if count == 0:
        return keypoints, 0
    out = keypoints.clone() if hasattr(keypoints, "clone") else keypoints.copy()
    out[far] = 0
    return out, count
