"""Options of ``dl3d data make body-clip`` (torch-free, so ``--help`` stays light)."""

from __future__ import annotations

from dataclasses import dataclass

from dl3d.config import opt


@dataclass
class BodyClipSpec:
    """A short MP4 of a body model walking, rendered with pytorch3d (the procedural body is NOT SMPL)."""

    videos: int = opt(1, "number of clips (walk_000.mp4, walk_001.mp4, ...), each with its own seed")
    frames: int = opt(24, "frames per clip")
    fps: float = opt(25.0, "frames per second")
    width: int = opt(320, "image width, pixels")
    height: int = opt(240, "image height, pixels")
    focal_length: float = opt(300.0, "focal length, pixels (principal point at the centre)")
    distance: float = opt(3.2, "distance of the body from the camera, metres")
    seed: int = opt(0, "random seed of the motion and shape")

    def __post_init__(self):
        if self.videos < 1 or self.frames < 1:
            raise ValueError(f"videos and frames must be >= 1, got {self.videos}, {self.frames}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"expected an image of at least 16x16 pixels, got {self.width}x{self.height}")
        if self.fps <= 0 or self.focal_length <= 0 or self.distance <= 0:
            raise ValueError("fps, focal_length and distance must be positive")
