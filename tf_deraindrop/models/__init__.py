"""The Attentive GAN's networks."""

from tf_deraindrop.models.discriminator import Discriminator
from tf_deraindrop.models.generator import Generator

__all__ = ["Discriminator", "Generator"]
