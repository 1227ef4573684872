"""tf-deraindrop: the Attentive GAN for raindrop removal in TensorFlow 2 / Keras 3.

Example:
    >>> import tf_deraindrop
    >>> generator = tf_deraindrop.import_official_checkpoint("gen.pkl")  # doctest: +SKIP
    >>> clean = tf_deraindrop.derain(generator, rainy_uint8_rgb)  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "Discriminator",
    "Generator",
    "derain",
    "import_official_checkpoint",
    "load_generator",
]

# Imports are lazy so that `python -m tf_deraindrop.<tool> --help` answers
# before TensorFlow has loaded.
_LAZY = {
    "Discriminator": "tf_deraindrop.models",
    "Generator": "tf_deraindrop.models",
    "derain": "tf_deraindrop.inference",
    "load_generator": "tf_deraindrop.inference",
    "import_official_checkpoint": "tf_deraindrop.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tf_deraindrop' has no attribute {name!r}")
