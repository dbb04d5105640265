"""Options of the GIRAFFE batch job (``dl3d giraffe sweep``) and of its plan, free of torch (instant ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass

from dl3d.config import opt


@dataclass
class GiraffeSweepConfig:
    """Options of the GIRAFFE controllable render sweep."""

    checkpoint: str = opt(help="training checkpoint folder of `dl3d train giraffe` (any URL), holding state.pt")
    alpha: bool = opt(False, "also write each object's opacity map (rendered alone) as grey PNGs under alpha/")
    gif: bool = opt(True, "write one animated GIF per sample under gifs/")
    batch_size: int = opt(16, "frames per forward pass")
    use_ema: bool = opt(True, "render with the EMA generator (as the official renderer); --no-use-ema: the live one")

    def __post_init__(self):
        if not self.checkpoint:
            raise ValueError("checkpoint: give the URL of a `dl3d train giraffe` checkpoint folder")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class GiraffePlanSpec:
    """What ``dl3d giraffe plan`` writes: one row per sample of one program."""

    program: str = opt("object_rotation", "render program (see `dl3d.giraffe.programs`), e.g. object_rotation, "
                                          "object_translation_horizontal, interpolate_app, add_objects")
    samples: int = opt(16, "samples (one latent seed each)")
    frames: int = opt(16, "frames per sample")
    shards: int = opt(4, "Parquet shards (units of work and retry)")
    seed: int = opt(0, "sample i gets latent seed seed * 1000003 + i")

    def __post_init__(self):
        for name in ("samples", "frames", "shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.shards > self.samples:
            raise ValueError(f"shards ({self.shards}) must be <= samples ({self.samples})")
