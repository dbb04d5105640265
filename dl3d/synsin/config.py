"""``SynSinConfig``: every knob of SynSin (Wiles et al., CVPR 2020) and its presets.

Paper values are those of the official code (facebookresearch/synsin, ``options/train_options.py``
and ``train.sh``): refinement net ``resnet_256W8UpDown64``, ``norm_G sync:spectral_batch``,
alpha compositing, K = 128 points per pixel, splat radius 4 px at 256 x 256, gamma (``--tau``) 1,
losses ``1.0_l1 10.0_content`` (L1 and VGG19 perceptual), hinge GAN (weight 1) with discriminator
feature matching (``--lambda_feat`` 10), a 2-scale, 4-layer PatchGAN (``ndf`` 64, spectral + instance
norm), Adam with betas (0, 0.9), lr_G 5e-4 and lr_D 2e-3 (``--lr_g``/``--lr_d`` defaults), depth
``sigmoid * (max_z - min_z) + min_z`` with min_z 0.5, max_z 10 (Matterport3D/Replica) or 1 and 100
(RealEstate10K).

The perceptual (VGG19) loss needs ImageNet-trained VGG19 weights, which this library never downloads:
give their path in ``perceptual_weights``. Without a path the perceptual term is OFF (its effective
weight is 0, ``perceptual_enabled`` is False, and the builder warns); random VGG weights are never
used as a "perceptual" loss.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt

ACCUMULATIONS = ("alphacomposite", "wsum", "wsumnorm")
DEPTH_MAPPINGS = ("linear", "inverse")
GAN_MODES = ("hinge", "ls", "original")
LR_SCHEDULES = ("none", "cosine")


@dataclass
class SynSinConfig:
    """SynSin: feature and depth networks, a differentiable point renderer, a refinement net and a GAN.

    Images are RGB in [0, 1] at the model's boundary; inside they are mapped to [-1, 1] (the official
    ``--normalize_image``) and the refinement net ends in tanh. Depth is in metres (the units of the
    poses' translations). The splat radius is in pytorch3d NDC units, where the shorter image side
    spans [-1, 1]: ``radius = pixels * 2 / min(H, W)``.

    perceptual_weights: path of a VGG19 state_dict (torchvision layout, ``features.*`` keys or the
    ``features`` module's own keys). None turns the perceptual loss OFF (effective weight 0).
    """

    image_height: int = opt(256, "training/inference image height, pixels")
    image_width: int = opt(256, "training/inference image width, pixels")

    feature_dim: int = opt(64, "channels of the per-pixel features lifted to 3D points")
    feature_width: int = opt(64, "feature network width (ngf); its ResNet blocks use ngf/2 then ngf channels")
    feature_blocks: int = opt(8, "ResNet blocks in the spatial feature network (no down-sampling)")

    depth_filters: int = opt(32, "U-Net base width of the depth network (doubles per level up to 8x)")
    depth_levels: int = opt(8, "U-Net down/up-sampling levels; image sides must be divisible by 2**levels")
    min_depth: float = opt(0.5, "nearest predictable depth, metres (the official --min_z)")
    max_depth: float = opt(10.0, "farthest predictable depth, metres (the official --max_z)")
    depth_mapping: Literal["linear", "inverse"] = opt(
        "linear", "sigmoid s -> depth: linear = min + s*(max-min) (paper); inverse = 1/(1/max + s*(1/min-1/max)), "
                  "uniform in inverse depth, for far scenes (the official --use_inverse_depth, KITTI)")

    radius: float = opt(0.03125, "splat radius in pytorch3d NDC units (= pixels * 2 / min(H, W); "
                                 "paper: 4 px at 256 -> 0.03125)")
    points_per_pixel: int = opt(128, "K: nearest points kept per pixel by the rasterizer, composited front to back")
    accumulation: Literal["alphacomposite", "wsum", "wsumnorm"] = opt(
        "alphacomposite", "how the K points of a pixel are combined: alpha compositing (paper), "
                          "weighted sum, or normalised weighted sum")
    gamma: float = opt(1.0, "soft-splat exponent (the official --tau): alpha = (1 - d/radius)**gamma, "
                            "d the point-to-pixel distance")

    refine_width: int = opt(64, "refinement net width (ngf); blocks run at ngf, 2ngf, 4ngf")
    refine_downsamples: int = opt(2, "down-sampling ResNet blocks in the refinement net (each matched by an "
                                     "up-sampling one); paper: 2")
    refine_mid_blocks: int = opt(1, "ResNet blocks at the lowest resolution of the refinement net; paper: 1")
    spectral_norm: bool = opt(True, "spectral normalisation on generator convolutions (norm_G spectral_batch)")

    disc_scales: int = opt(2, "discriminators, each on a 2x down-sampled copy of the previous one's input")
    disc_layers: int = opt(4, "strided conv layers per PatchGAN discriminator (n_layers_D)")
    disc_width: int = opt(64, "first-layer width of each discriminator (ndf), doubling up to 512")
    gan_mode: Literal["hinge", "ls", "original"] = opt("hinge", "GAN objective: hinge (paper), least squares, "
                                                                "or the original cross-entropy")

    l1_weight: float = opt(1.0, "weight of the L1 photometric loss (images in [-1, 1])")
    perceptual_weight: float = opt(10.0, "weight of the VGG19 perceptual loss; only applies when "
                                         "perceptual_weights is given")
    gan_weight: float = opt(1.0, "weight of the generator's adversarial loss")
    feature_matching_weight: float = opt(10.0, "weight of the discriminator feature-matching loss "
                                               "(the official --lambda_feat, divided by disc_scales)")
    perceptual_weights: str | None = opt(None, "VGG19 weights file for the perceptual loss; none = perceptual loss OFF")

    lr_generator: float = opt(5e-4, "Adam learning rate of the generator (official --lr_g default)")
    lr_discriminator: float = opt(2e-3, "Adam learning rate of the discriminators (official --lr_d default)")
    adam_beta1: float = opt(0.0, "Adam beta1 for both optimisers")
    adam_beta2: float = opt(0.9, "Adam beta2 for both optimisers")
    lr_schedule: Literal["none", "cosine"] = opt(
        "none", "learning-rate schedule of both optimisers: none = constant (paper); cosine = from the set rates "
                "down to 0 over lr_decay_steps steps (then held at 0)")
    lr_decay_steps: int = opt(0, "steps of the cosine decay (set it to the run's length); 0 with lr_schedule none")

    def __post_init__(self):
        for name in ("image_height", "image_width", "feature_dim", "feature_width", "feature_blocks",
                     "depth_filters", "depth_levels", "points_per_pixel", "refine_width", "disc_scales",
                     "disc_layers", "disc_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("refine_downsamples", "refine_mid_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.feature_width < 2:
            raise ValueError(f"feature_width must be >= 2 (its first blocks use feature_width // 2 channels), "
                             f"got {self.feature_width}")
        step = 2 ** max(self.depth_levels, self.refine_downsamples)
        if self.image_height % step or self.image_width % step:
            raise ValueError(
                f"image size {self.image_height}x{self.image_width} must be divisible by 2**depth_levels = "
                f"{2 ** self.depth_levels} and 2**refine_downsamples = {2 ** self.refine_downsamples}")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth (metres), got min_depth={self.min_depth}, "
                             f"max_depth={self.max_depth}")
        if self.depth_mapping not in DEPTH_MAPPINGS:
            raise ValueError(f"depth_mapping must be one of {', '.join(DEPTH_MAPPINGS)}; got {self.depth_mapping!r}")
        if not 0 < self.radius <= 2:
            raise ValueError(f"radius must be in (0, 2] NDC units (pixels * 2 / min(H, W)), got {self.radius}")
        if self.points_per_pixel > 150:
            raise ValueError(f"points_per_pixel must be <= 150 (pytorch3d's rasterizer limit), "
                             f"got {self.points_per_pixel}")
        if self.accumulation not in ACCUMULATIONS:
            raise ValueError(f"accumulation must be one of {', '.join(ACCUMULATIONS)}; got {self.accumulation!r}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if self.gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {', '.join(GAN_MODES)}; got {self.gan_mode!r}")
        for name in ("l1_weight", "perceptual_weight", "gan_weight", "feature_matching_weight"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in ("lr_generator", "lr_discriminator"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {self.lr_schedule!r}")
        if isinstance(self.lr_decay_steps, bool) or not isinstance(self.lr_decay_steps, int) or self.lr_decay_steps < 0:
            raise ValueError(f"lr_decay_steps must be an integer >= 0, got {self.lr_decay_steps!r}")
        if self.lr_schedule != "none" and self.lr_decay_steps < 1:
            raise ValueError(f"lr_schedule {self.lr_schedule!r} needs lr_decay_steps >= 1 (the run's length in "
                             f"steps), got {self.lr_decay_steps}")
        if self.perceptual_weights is not None and not str(self.perceptual_weights).strip():
            raise ValueError("perceptual_weights must be a file path or None, got an empty string")

    @property
    def perceptual_enabled(self) -> bool:
        """True when the perceptual loss is on: a weights file is given and its weight is > 0."""
        return self.perceptual_weights is not None and self.perceptual_weight > 0

    @property
    def effective_perceptual_weight(self) -> float:
        """The perceptual weight actually applied: ``perceptual_weight``, or 0 without a weights file."""
        return self.perceptual_weight if self.perceptual_enabled else 0.0

    def lr_factor(self, step: int) -> float:
        """Multiplier of both learning rates at 1-based ``step``: 1 without a schedule; for cosine
        ``(1 + cos(pi * (step - 1) / lr_decay_steps)) / 2``, 0 past ``lr_decay_steps``."""
        if self.lr_schedule == "none":
            return 1.0
        t = min(max(step - 1, 0), self.lr_decay_steps) / self.lr_decay_steps
        return 0.5 * (1.0 + math.cos(math.pi * t))

    @property
    def uses_discriminator(self) -> bool:
        """True when the GAN or feature-matching terms are on (so a discriminator must be trained)."""
        return self.gan_weight > 0 or self.feature_matching_weight > 0

    def replace(self, **changes) -> SynSinConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_CPU_SMALL = dict(
    image_height=32, image_width=32,
    feature_dim=16, feature_width=16, feature_blocks=2,
    depth_filters=8, depth_levels=5,
    # Rooms of `dl3d data make multiview` are seen at 0.5-6.5 m: the depth sigmoid starts at 3.25 m, not 5.25.
    max_depth=6.0,
    # 1-px splats (0.0625 NDC at 32 px), not 2: warping with the TRUE depth beats copying the source by about
    # 6 dB with 1-px splats but only 3.6 dB with 2-px ones (their blur caps the model). 900 steps on the
    # bench's data, held-out PSNR over copying the source: 2 px +2.95 dB, 1 px +3.18 / +3.78 dB (two data
    # orders), 1 px with the cosine decay below +3.78 / +3.83 / +3.86 dB (three orders).
    radius=0.0625, points_per_pixel=8,
    # One down-sampling (to 16 x 16), not the paper's two: at 32 px two leave an 8 x 8 bottleneck with no
    # skip, which blurs the texture the warp carries.
    refine_width=16, refine_downsamples=1, refine_mid_blocks=1,
    disc_scales=2, disc_layers=3, disc_width=16,
)

SYNSIN_PRESETS: dict[str, SynSinConfig] = {
    # The official Matterport3D / Replica setup (argparse defaults + train.sh) at 256 x 256.
    "paper256": SynSinConfig(),
    # RealEstate10K: same networks, depth range 1-100 m (options.get_dataset).
    "realestate256": SynSinConfig(min_depth=1.0, max_depth=100.0),
    # A few hundred training steps in minutes on 2 CPU cores: 32 x 32, narrow nets, K = 8, 1-px splats,
    # trained on L1 (+ perceptual with weights) only, with a plain regression Adam (lr 1e-3, betas 0.9 /
    # 0.999; the paper's beta1 = 0 is for the GAN) decayed to 0 by a cosine over 900 steps (the bench's
    # length; give --lr-decay-steps the length of another run). bench/synsin_training.py measures it
    # against copying the source image on held-out rooms; with the paper's GAN + feature-matching terms a
    # 1200-step CPU run stayed ~1 dB below copying the source.
    "cpu-small": SynSinConfig(**_CPU_SMALL, gan_weight=0.0, feature_matching_weight=0.0,
                              lr_generator=1e-3, adam_beta1=0.9, adam_beta2=0.999,
                              lr_schedule="cosine", lr_decay_steps=900),
    # The same small networks with the paper's full loss (GAN + feature matching) and optimisers: the GAN
    # path on CPU.
    "cpu-small-gan": SynSinConfig(**_CPU_SMALL),
}
