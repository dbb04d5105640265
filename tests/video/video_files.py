"""Videos written with PyAV directly (independent of dl3d's own encoder)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def gradient_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """n distinct RGB frames: a moving gradient, so inter-frame codecs have something to code."""
    yy, xx = np.mgrid[0:height, 0:width]
    return [np.stack([(xx * 3 + 7 * i) % 256, (yy * 2 + 5 * i) % 256, np.full_like(xx, 40 * i % 256)], -1)
            .astype(np.uint8) for i in range(n)]


def write_video(path: Path, frames: list[np.ndarray], fps: Fraction | int, codec: str, rotation: int = 0) -> Path:
    """Encode ``frames`` (H, W, 3 uint8) at ``fps``; ``rotation``: the display rotation (degrees) to record."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
