"""Options of the SynSin batch job (``dl3d synsin render``), free of torch so its ``--help`` is instant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt


@dataclass
class SynSinRenderConfig:
    """Options of the SynSin mass view synthesis job."""

    checkpoint: str = opt(help="SynSin checkpoint: a checkpoint folder of `dl3d train synsin` or a .pt file (any URL)")
    trajectory: Literal["orbit", "dolly", "pan", "explicit"] = opt(
        "orbit", "camera path per source image; explicit = the input's target_poses column")
    steps: int = opt(9, "views per source image along the trajectory")
    magnitude: float = opt(0.3, "trajectory extent: radians for orbit, metres for dolly and pan")
    pivot_depth: float = opt(2.0, "orbit: distance of the point the camera circles, metres")
    gif: bool = opt(False, "also write an animated GIF per source image under gifs/")
    batch_size: int = opt(8, "source images per forward pass")

    def __post_init__(self):
        if not self.checkpoint:
            raise ValueError("checkpoint: give the path or URL of a SynSin checkpoint (.pt)")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
