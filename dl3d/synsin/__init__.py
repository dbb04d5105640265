"""SynSin (Wiles et al., CVPR 2020): end-to-end view synthesis from a single image, as a library.

No I/O in the modules; ``build_synsin`` / ``load_synsin_checkpoint`` read weights and files.
"""

from dl3d.synsin.builder import (
    PERCEPTUAL_OFF_MESSAGE,
    build_synsin,
    load_synsin_checkpoint,
    make_synsin_optimizers,
    synsin_checkpoint,
)
from dl3d.synsin.config import SYNSIN_PRESETS, SynSinConfig
from dl3d.synsin.discriminator import MultiScaleDiscriminator, PatchDiscriminator
from dl3d.synsin.model import SynSin
from dl3d.synsin.point_renderer import PointRenderer
from dl3d.synsin.train_step import (
    discriminate,
    synsin_discriminator_losses,
    synsin_discriminator_step,
    synsin_generator_losses,
    synsin_generator_step,
)
from dl3d.synsin.vgg import VGG19Features, load_vgg19_features

__all__ = [
    "MultiScaleDiscriminator", "PERCEPTUAL_OFF_MESSAGE", "PatchDiscriminator", "PointRenderer", "SYNSIN_PRESETS",
    "SynSin", "SynSinConfig", "VGG19Features", "build_synsin", "discriminate", "load_synsin_checkpoint", "load_vgg19_features",
    "make_synsin_optimizers", "synsin_checkpoint", "synsin_discriminator_losses", "synsin_discriminator_step",
    "synsin_generator_losses", "synsin_generator_step",
]
