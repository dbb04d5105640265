"""GIRAFFE (Niemeyer & Geiger, CVPR 2021): compositional generative neural feature fields, as a library.

Pure torch (no pytorch3d, no Ray): the model runs wherever torch does. No I/O in the modules.
"""

from dl3d.giraffe.config import GIRAFFE_PRESETS, GiraffeConfig
from dl3d.giraffe.discriminator import DCDiscriminator
from dl3d.giraffe.feature_field import FeatureField, positional_encoding
from dl3d.giraffe.generator import GiraffeGenerator, Rendered
from dl3d.giraffe.neural_renderer import NeuralRenderer

__all__ = ["DCDiscriminator", "FeatureField", "GIRAFFE_PRESETS", "GiraffeConfig", "GiraffeGenerator",
           "NeuralRenderer", "Rendered", "positional_encoding"]
