"""RealEstate10K camera files: parsing, intrinsics in pixels, and the centre crop of normalised intrinsics.

A camera file's first line is the YouTube URL; each following line is one frame::

    timestamp fx fy cx cy k1 k2 p00 p01 p02 p03 p10 p11 p12 p13 p20 p21 p22 p23

with ``fx, cx`` normalised by the video's width and ``fy, cy`` by its height, and the 3x4
world-to-camera pose row-major (see ``dl3d.ingest.realestate10k``). With square pixels the video's
aspect ratio is ``fy / fx`` (16:9 for the released clips).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dl3d.ingest.report import SkippedInput

__all__ = ["FIELDS", "CameraFrame", "center_crop_intrinsics", "intrinsics_matrix", "parse_camera_file",
           "video_aspect"]

FIELDS = 19
"""Numbers per frame line: timestamp, fx, fy, cx, cy, k1, k2 and the 3x4 pose."""


@dataclass
class CameraFrame:
    """One line of a RealEstate10K camera file."""

    index: int
    """Position among the frame lines of the file, from 0 (malformed lines count): the frame number."""
    timestamp: int
    """Microseconds from the start of the video."""
    intrinsics: np.ndarray
    """(4,) float64 fx, fy, cx, cy normalised by the image width (fx, cx) and height (fy, cy)."""
    pose: np.ndarray
    """(4, 4) float64 world-to-camera, OpenCV axes (the file's 3x4 with a last row 0 0 0 1)."""


def intrinsics_matrix(normalised: np.ndarray, width: int, height: int) -> np.ndarray:
    """(3, 3) K in pixels from normalised ``(fx, fy, cx, cy)`` for an image of ``width x height`` pixels."""
    fx, fy, cx, cy = np.asarray(normalised, dtype=np.float64)
    return np.array([[fx * width, 0.0, cx * width], [0.0, fy * height, cy * height], [0.0, 0.0, 1.0]])


def _timestamp(token: str) -> int:
    try:
        return int(token)
    except ValueError:
        value = float(token)
        if not value.is_integer():
            raise ValueError(f"timestamp {token!r} is not an integer") from None
        return int(value)


def _parse_line(line: str) -> tuple[int, np.ndarray, np.ndarray]:
    """(timestamp, (4,) normalised intrinsics, (4, 4) pose) of one frame line; ValueError says what is wrong."""
    tokens = line.split()
    if len(tokens) != FIELDS:
        raise ValueError(f"expected {FIELDS} numbers (timestamp fx fy cx cy k1 k2 and a row-major 3x4 "
                         f"world-to-camera matrix), got {len(tokens)} fields")
    ts = _timestamp(tokens[0])
    try:
        values = np.array([float(t) for t in tokens[1:]])
    except ValueError:
        bad = next(t for t in tokens[1:] if not _is_float(t))
        raise ValueError(f"not a number: {bad!r}") from None
    if not np.isfinite(values).all():
        raise ValueError("contains NaN or infinite numbers")
    intr = values[:4]
    if not (intr[:2] > 0).all():
        raise ValueError(f"focal lengths must be > 0, got fx={intr[0]:g}, fy={intr[1]:g}")
    pose = np.eye(4)
    pose[:3] = values[6:].reshape(3, 4)
    R = pose[:3, :3]
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
        raise ValueError("the 3x3 part of the pose is not a rotation")
    return ts, intr, pose


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse_camera_file(text: str, name: str) -> tuple[str | None, list[CameraFrame], list[SkippedInput]]:
    """Parse one camera file.

    Returns the video URL (None when the file has no URL line), the frames in file order, and the
    malformed or duplicate-timestamp lines as ``SkippedInput('{name}:{line number}', reason)``.
    Blank lines are ignored.
    """
    url = None
    frames: list[CameraFrame] = []
    skipped: list[SkippedInput] = []
    seen: set[int] = set()
    index = 0
    first = True
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if first:
            first = False
            head = line.split()
            if len(head) == 1 and not _is_float(head[0]):  # the YouTube URL
                url = head[0]
                continue
        try:
            ts, intr, pose = _parse_line(line)
        except ValueError as exc:
            skipped.append(SkippedInput(f"{name}:{lineno}", f"malformed camera line: {exc}"))
            index += 1
            continue
        if ts in seen:
            skipped.append(SkippedInput(f"{name}:{lineno}", f"duplicate timestamp {ts}"))
        else:
            seen.add(ts)
            frames.append(CameraFrame(index, ts, intr, pose))
        index += 1
    return url, frames, skipped


def video_aspect(normalised: np.ndarray) -> float:
    """Width / height of the frame the normalised ``(fx, fy, cx, cy)`` describe, assuming square
    pixels: ``fy / fx`` (``fx W = fy H``)."""
    fx, fy = float(normalised[0]), float(normalised[1])
    return fy / fx


def center_crop_intrinsics(normalised: np.ndarray, from_aspect: float, to_aspect: float) -> np.ndarray:
    """Normalised ``(fx, fy, cx, cy)`` of the centre crop, at aspect ``to_aspect``, of a frame of aspect
    ``from_aspect`` (width / height).

    The crop keeps the whole height and the middle ``s = to / from`` of the width when the target is
    narrower, else the whole width and the middle ``s = from / to`` of the height; a normalised
    coordinate ``u`` becomes ``(u - (1 - s) / 2) / s`` along the cropped axis, a focal ``f / s``.
    Returns (4,) float64.
    """
    fx, fy, cx, cy = (float(v) for v in normalised)
    if to_aspect < from_aspect:
        s = to_aspect / from_aspect
        fx, cx = fx / s, (cx - (1 - s) / 2) / s
    elif to_aspect > from_aspect:
        s = from_aspect / to_aspect
        fy, cy = fy / s, (cy - (1 - s) / 2) / s
    return np.array([fx, fy, cx, cy])
