"""Options of the Mesh R-CNN batch job (``dl3d meshrcnn reconstruct``), free of torch so its ``--help`` is instant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt


@dataclass
class MeshRCNNReconstructConfig:
    """Options of the mass mesh reconstruction job."""

    checkpoint: str = opt(help="Mesh R-CNN checkpoint: a checkpoint folder of `dl3d train meshrcnn` or a .pt file "
                               "(any URL)")
    meshes: Literal["ply", "obj"] = opt("ply", "mesh file format")
    score_threshold: float = opt(0.5, "rcnn: keep detections with at least this score")
    max_detections: int = opt(20, "rcnn: at most this many detections per image (highest scores first)")
    object_distance: float = opt(2.5, "rcnn: centre depth, metres, at which each object is placed (Mesh R-CNN "
                                      "predicts depth only up to scale)")
    focal_length: float | None = opt(None, "focal length in pixels for the placement; default: the image's "
                                           "intrinsics, else its width")
    batch_size: int = opt(4, "images per forward pass")

    def __post_init__(self):
        if not self.checkpoint:
            raise ValueError("checkpoint: give the path or URL of a Mesh R-CNN checkpoint")
        if not 0 <= self.score_threshold <= 1:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.max_detections < 1 or self.batch_size < 1:
            raise ValueError(f"max_detections and batch_size must be >= 1, got {self.max_detections}, {self.batch_size}")
        if not self.object_distance > 0 or (self.focal_length is not None and not self.focal_length > 0):
            raise ValueError(f"object_distance and focal_length must be > 0, got {self.object_distance}, "
                             f"{self.focal_length}")
