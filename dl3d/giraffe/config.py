"""``GiraffeConfig``: every knob of GIRAFFE (Niemeyer & Geiger, CVPR 2021) and its presets, as data.

Values are those of the official code (autonomousvision/giraffe): ``configs/default.yaml``, the
per-dataset ``configs/64res/*.yaml`` and ``configs/256res/*.yaml``, and the defaults of
``im2scene/giraffe/models/{decoder,generator,bounding_box_generator,neural_renderer}.py`` and
``im2scene/discriminator/conv.py``. Camera and box controls keep the official units:

- ``range_u`` (azimuth) and ``range_v`` (elevation) are in [0, 1]: the camera sits at
  ``radius * (sin(phi) cos(theta), sin(phi) sin(theta), cos(phi))`` with ``theta = 2 pi u`` and
  ``phi = arccos(1 - 2 v)`` (z up; v = 0.5 is the horizon, v = 0.25 is 30 degrees above it),
  looking at the origin.
- Box scales, translations and rotations are drawn uniformly between ``*_min`` and ``*_max``; a
  rotation value r in [0, 1] is an angle of ``2 pi r`` about the vertical (z) axis.

Departures from the official configs (also in the README): the CLEVR presets sample translations
uniformly in their box (the official code draws them from ``prior/*.npz`` files of the CLEVR
renders, which we do not have; without the file the official code does the same).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt

SCHEMES = ("box", "dense")
"""How object fields are evaluated: ``box`` = only samples inside each object's (padded) box (dl3d);
``dense`` = every sample, density masked afterwards (the official code)."""

CLEVR_COUNT_PROBS = (0.19456788355146545395, 0.24355003312266127155, 0.25269546846185522711,
                     0.30918661486401804737)
"""Probabilities of 2, 3, 4 and 5 objects in CLEVR2345 (official ``get_object_existance``)."""


@dataclass
class GiraffeConfig:
    """GIRAFFE: compositional generative neural feature fields, a neural renderer and a DCGAN discriminator.

    Images are RGB in [0, 1] (the generator ends in a sigmoid; real images are not rescaled, as the
    official code with ``use_tanh_range: False``). World frame: z up, metres-free units where the
    objects live in roughly [-1, 1]^3 and the camera sits at ``radius``.
    """

    image_size: int = opt(64, "output image side, pixels (a power of two >= feature_resolution)")
    feature_resolution: int = opt(16, "side of the volume-rendered feature image (official resolution_vol)")
    n_samples: int = opt(64, "samples per ray (official n_ray_samples)")
    depth_range: tuple[float, ...] = opt((0.5, 6.0), "near and far ray parameter: depth along the camera axis")
    radius: float = opt(2.732, "camera distance from the origin")
    fov: float = opt(49.13, "field of view, degrees, across the pixel-centre span [-1, 1] of the image plane")
    range_u: tuple[float, ...] = opt((0.0, 0.0), "camera azimuth range in turns [0, 1]")
    range_v: tuple[float, ...] = opt((0.25, 0.25), "camera elevation range, v in [0, 1] (phi = arccos(1 - 2v))")
    bg_rotation_range: tuple[float, ...] = opt((0.0, 0.0), "background rotation range about z, turns; "
                                                          "one draw per batch as the official code")

    n_boxes: int = opt(1, "objects (feature fields sharing one MLP) per scene, background excluded")
    scale_min: tuple[float, ...] = opt((0.5, 0.5, 0.5), "smallest box half-size along x, y, z")
    scale_max: tuple[float, ...] = opt((0.5, 0.5, 0.5), "largest box half-size along x, y, z")
    fix_scale_ratio: bool = opt(True, "one uniform draw scales all three axes (official default)")
    translation_min: tuple[float, ...] = opt((-0.75, -0.75, 0.0), "smallest box centre x, y, z")
    translation_max: tuple[float, ...] = opt((0.75, 0.75, 0.0), "largest box centre x, y, z")
    rotation_range: tuple[float, ...] = opt((0.0, 1.0), "box rotation about z, turns")
    object_on_plane: bool = opt(False, "box centres at z = z_level_plane")
    z_level_plane: float = opt(0.0, "z of box centres when object_on_plane")
    sample_object_existence: bool = opt(False, "drop objects at random: 2-5 present with the CLEVR2345 "
                                               "probabilities (needs n_boxes = 5)")
    box_padding: float = opt(0.1, "a sample is inside a box when every box coordinate is within 1 + padding")

    z_dim: int = opt(256, "object shape and appearance code size")
    z_dim_bg: int = opt(128, "background shape and appearance code size")
    object_hidden: int = opt(128, "object MLP width")
    object_blocks: int = opt(8, "object MLP depth (layers before the density head)")
    object_skips: tuple[int, ...] = opt((4,), "object MLP layers after which codes and points are added again")
    object_downscale: float = opt(2.0, "object points are divided by this before encoding")
    bg_hidden: int = opt(64, "background MLP width")
    bg_blocks: int = opt(4, "background MLP depth")
    bg_skips: tuple[int, ...] = opt((), "background MLP skip layers (none officially)")
    bg_downscale: float = opt(12.0, "background points are divided by this before encoding")
    feature_dim: int = opt(128, "channels of the fields' feature output and of the rendered feature image")
    n_freq_points: int = opt(10, "positional-encoding frequencies for points (no raw input)")
    n_freq_dirs: int = opt(4, "positional-encoding frequencies for view directions")

    renderer_features: int = opt(128, "neural renderer width at 16 x 16 (official n_feat), halving per block")
    renderer_min_features: int = opt(32, "neural renderer minimum width")
    disc_features: int = opt(512, "discriminator width of its last hidden layer (halving towards the input)")

    lr_generator: float = opt(5e-4, "RMSprop learning rate of the generator")
    lr_discriminator: float = opt(1e-4, "RMSprop learning rate of the discriminator")
    r1_weight: float = opt(10.0, "R1 weight: weight * mean over the batch of sum ||grad_x D(x)||^2 on reals")
    ema_beta: float = opt(0.999, "EMA of the generator weights after every generator step (0 = no EMA)")
    scheme: Literal["box", "dense"] = opt("box", "object field evaluation: box = only samples in the box; "
                                                 "dense = everywhere then mask (official)")
    sample_temperature: float = opt(0.65, "latent temperature of render sweeps (official rendering.py)")

    inception_weights: str | None = opt(None, "pytorch-fid Inception state dict for FID/KID; none = seeded "
                                              "random features (metrics named *_randfeat)")
    eval_block_size: int = opt(100, "KID block size (images per block; blocks are averaged)")

    def __post_init__(self):
        for name in ("image_size", "feature_resolution", "n_samples", "n_boxes", "z_dim", "z_dim_bg",
                     "object_hidden", "object_blocks", "bg_hidden", "bg_blocks", "feature_dim", "n_freq_points",
                     "n_freq_dirs", "renderer_features", "renderer_min_features", "disc_features", "eval_block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("image_size", "feature_resolution"):
            value = getattr(self, name)
            if value & (value - 1):
                raise ValueError(f"{name} must be a power of two, got {value}")
        if self.image_size < self.feature_resolution:
            raise ValueError(f"image_size {self.image_size} must be >= feature_resolution {self.feature_resolution}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 (the discriminator has log2(S) - 2 layers), got {self.image_size}")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {self.n_samples}")
        for name, n in (("depth_range", 2), ("range_u", 2), ("range_v", 2), ("bg_rotation_range", 2),
                        ("rotation_range", 2), ("scale_min", 3), ("scale_max", 3), ("translation_min", 3),
                        ("translation_max", 3)):
            value = tuple(float(x) for x in getattr(self, name))
            if len(value) != n:
                raise ValueError(f"{name} must have {n} values, got {value}")
            object.__setattr__(self, name, value)
        self.object_skips = tuple(int(x) for x in self.object_skips)
        self.bg_skips = tuple(int(x) for x in self.bg_skips)
        if not 0 < self.depth_range[0] < self.depth_range[1]:
            raise ValueError(f"depth_range must be 0 < near < far, got {self.depth_range}")
        if not 0 < self.fov < 180:
            raise ValueError(f"fov must be in (0, 180) degrees, got {self.fov}")
        if self.radius <= 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")
        for name in ("range_v",):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"{name} must satisfy 0 <= min <= max <= 1, got {(lo, hi)}")
        if any(lo > hi for lo, hi in zip(self.scale_min, self.scale_max)) or min(self.scale_min) <= 0:
            raise ValueError(f"need 0 < scale_min <= scale_max per axis, got {self.scale_min}, {self.scale_max}")
        if any(lo > hi for lo, hi in zip(self.translation_min, self.translation_max)):
            raise ValueError(f"need translation_min <= translation_max per axis, got {self.translation_min}, "
                             f"{self.translation_max}")
        if self.sample_object_existence and self.n_boxes != len(CLEVR_COUNT_PROBS) + 1:
            raise ValueError(f"sample_object_existence draws 2-5 objects: needs n_boxes = 5, got {self.n_boxes}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}; got {self.scheme!r}")
        for name in ("lr_generator", "lr_discriminator"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.r1_weight < 0:
            raise ValueError(f"r1_weight must be >= 0, got {self.r1_weight}")
        if not 0 <= self.ema_beta < 1:
            raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta}")
        if self.box_padding < 0:
            raise ValueError(f"box_padding must be >= 0, got {self.box_padding}")
        if self.inception_weights is not None and not str(self.inception_weights).strip():
            raise ValueError("inception_weights must be a file path or None, got an empty string")

    @property
    def renderer_blocks(self) -> int:
        """Upsampling blocks of the neural renderer: log2(image_size / feature_resolution)."""
        return int(round(math.log2(self.image_size // self.feature_resolution)))

    @property
    def disc_layers(self) -> int:
        """Strided convolutions of the discriminator: log2(image_size) - 2."""
        return int(round(math.log2(self.image_size))) - 2

    def replace(self, **changes) -> GiraffeConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _faces(**kw) -> dict:
    return dict(scale_min=(0.21,) * 3, scale_max=(0.21,) * 3, translation_min=(0.0,) * 3, translation_max=(0.0,) * 3,
                fov=10.0, **kw)


_CARS = dict(scale_min=(0.2, 0.16, 0.16), scale_max=(0.25, 0.2, 0.2), translation_min=(-0.22, -0.12, 0.0),
             translation_max=(0.22, 0.12, 0.0), range_v=(0.41667, 0.5), fov=10.0)
_CHURCH = dict(scale_min=(0.45,) * 3, scale_max=(0.55,) * 3, translation_min=(-0.15, -0.15, 0.0),
               translation_max=(0.15, 0.15, 0.0), range_v=(0.5, 0.5), fov=30.0, bg_rotation_range=(0.0, 0.25))
_CHAIRS = dict(scale_min=(0.5,) * 3, scale_max=(0.5,) * 3, translation_min=(0.0,) * 3, translation_max=(0.0,) * 3,
               range_v=(0.05, 0.5))
_WIDE = dict(image_size=256, feature_dim=256, renderer_features=256, lr_generator=2.5e-4)
"""The 256-pixel configs: 256-channel features and renderer, generator lr 2.5e-4."""
_CLEVR = dict(scale_min=(0.17,) * 3, scale_max=(0.17,) * 3, rotation_range=(0.0, 0.0), object_on_plane=True,
              z_level_plane=0.1665, range_v=(0.33333, 0.33333))
_CLEVR2345 = dict(_CLEVR, z_dim=64, z_dim_bg=32, bg_hidden=32, object_hidden=64, n_boxes=5,
                  translation_min=(-0.71, -0.71, 0.0), translation_max=(0.71, 0.71, 0.0), sample_object_existence=True)

GIRAFFE_PRESETS: dict[str, GiraffeConfig] = {
    # configs/64res/*.yaml (image 64, 16x16 features, 128 channels, lr 5e-4 / 1e-4)
    "cars64": GiraffeConfig(**_CARS),
    "cats64": GiraffeConfig(**_faces(rotation_range=(0.40278, 0.59722), range_v=(0.41667, 0.5))),
    "celeba64": GiraffeConfig(**_faces(rotation_range=(0.40278, 0.59722), range_v=(0.4167, 0.5))),
    "chairs64": GiraffeConfig(**_CHAIRS),
    "church64": GiraffeConfig(**_CHURCH),
    # configs/256res/*.yaml
    "cars256": GiraffeConfig(**_CARS, **_WIDE),
    "ffhq256": GiraffeConfig(**_faces(rotation_range=(0.40278, 0.59722), range_v=(0.4167, 0.5)), **_WIDE),
    "celebahq256": GiraffeConfig(**_faces(rotation_range=(0.375, 0.625), range_v=(0.4167, 0.5)), **_WIDE),
    "church256": GiraffeConfig(**_CHURCH, **_WIDE),
    "clevr2-256": GiraffeConfig(**_CLEVR, **_WIDE, n_boxes=2, translation_min=(-0.713, -0.713, 0.0),
                                translation_max=(0.713, 0.713, 0.0)),
    # clevr2345_256.yaml keeps 128 channels and the default generator lr 5e-4 (small fields, z 64 / 32).
    "clevr2345-256": GiraffeConfig(**_CLEVR2345, image_size=256),
    # dl3d: the CLEVR2345 model at 64 px (for `dl3d data make clevr` scenes at 64 px).
    "clevr-64": GiraffeConfig(**_CLEVR2345, image_size=64),
    # dl3d: learns on 2 CPU cores in minutes. 32 px from 16x16 features, 16 samples on the depth range that
    # holds the CLEVR objects (camera at 2.732), narrow fields, two objects, a 64-wide discriminator, and an
    # EMA of beta 0.99 (0.999 keeps 90 % of the initial weights after 100 steps; a CPU run has a few thousand).
    "cpu-small": GiraffeConfig(**dict(_CLEVR, n_boxes=2, translation_min=(-0.713, -0.713, 0.0),
                                      translation_max=(0.713, 0.713, 0.0)),
                               image_size=32, feature_resolution=16, n_samples=16, depth_range=(1.6, 4.0),
                               z_dim=32, z_dim_bg=16, object_hidden=32, object_blocks=4, object_skips=(2,),
                               bg_hidden=16, bg_blocks=2, feature_dim=16, renderer_features=16,
                               renderer_min_features=8, disc_features=64, ema_beta=0.99, eval_block_size=50),
}
"""Named configs (``dl3d train giraffe --preset NAME``)."""
