"""The Attentive GAN's networks."""

from tf_deraindrop.models.discriminator import Discriminator
from tf_deraindrop.models.generator import Generator
from tf_deraindrop.models.lite_generator import LiteGenerator

__all__ = ["Discriminator", "Generator", "LiteGenerator"]
