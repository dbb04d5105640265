"""Options of the SMPL batch jobs (``dl3d smpl fit``, ``dl3d smpl export``).

Kept apart from the workers, free of torch, so ``dl3d smpl fit --help`` builds without loading a model
library. The body-model and mesh options are declared once, in :class:`BodyModelJobConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt

MeshFormat = Literal["none", "ply", "obj"]
MESH_FORMATS = ("none", "ply", "obj")


@dataclass
class BodyModelJobConfig:
    """Options every job that poses a body model shares: the model file and mesh output."""

    model: str = opt(help="SMPL-format body model file (.pkl/.npz, local path or any fsspec URL): "
                          "SMPL_NEUTRAL.pkl or `dl3d body make-model`")
    meshes: MeshFormat = opt("none", "write one mesh file per row under meshes/: binary PLY or OBJ (none = no meshes)")

    def __post_init__(self):
        if not self.model:
            raise ValueError("model: give the path of an SMPL-format body model file (.pkl/.npz)")
        if self.meshes not in MESH_FORMATS:
            raise ValueError(f"meshes must be one of {', '.join(MESH_FORMATS)}; got {self.meshes!r}")


@dataclass
class SmplExportConfig(BodyModelJobConfig):
    """Options of the SMPL export job."""

    vertices: bool = opt(False, "also store the (6890, 3) posed vertices of each row in the Parquet output")
    batch_size: int = opt(1024, "rows per body-model forward pass")
    num_betas: int = opt(10, "shape coefficients of the body model to use (input rows may give fewer)")
    format: Literal["parquet", "amass-npz"] = opt(
        "parquet", "parquet: posed joints per row; amass-npz: one AMASS-style NPZ per (video, track) in a z-up world "
                   "(see dl3d/body/amass.py), indexed by the part table")
    fps: float = opt(30.0, "amass-npz: frames per second written as mocap_framerate")
    gender: Literal["neutral", "male", "female"] = opt("neutral", "amass-npz: the gender field (that of the model file)")

    def __post_init__(self):
        super().__post_init__()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_betas < 1:
            raise ValueError(f"num_betas must be >= 1, got {self.num_betas}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


@dataclass
class SmplFitConfig(BodyModelJobConfig):
    """Options of the SMPLify fit job (meshes are written for rows whose status is ``ok``)."""

    preset: Literal["default", "fast", "per-frame"] = opt(
        "default", "SMPLify preset: default (accuracy), fast (throughput), per-frame (no temporal term, no shared shape)")
    gmm: str = opt("", "SMPLify pose prior file (gmm_08.pkl, any fsspec URL); empty = built-in fallback, "
                       "which is NOT the CMU prior")
    temporal_weight: float | None = opt(None, "override the preset's temporal smoothness weight (0 = per-frame fits)")
    focal_length: float | None = opt(None, "focal length in pixels where the dataset has none "
                                           "(default: the image diagonal, about a 53 degree field of view)")
    image_width: int | None = opt(None, "image width in pixels where the dataset has none")
    image_height: int | None = opt(None, "image height in pixels where the dataset has none")
    max_rows: int = opt(20000, "fit at most this many rows at once (whole tracks are kept together)")

    def __post_init__(self):
        super().__post_init__()
        if self.focal_length is not None and self.focal_length <= 0:
            raise ValueError(f"focal_length must be > 0, got {self.focal_length}")
        for name in ("image_width", "image_height"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 pixel, got {getattr(self, name)}")
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")

    def smplify(self):
        """The library's ``SmplifyConfig``: the preset with this job's prior and temporal weight."""
        from dl3d.fitting.smplify import SMPLIFY_PRESETS

        cfg = dataclasses.replace(SMPLIFY_PRESETS[self.preset], gmm_path=self.gmm)
        if self.temporal_weight is not None:
            cfg = dataclasses.replace(cfg, temporal_weight=self.temporal_weight)
        return cfg
