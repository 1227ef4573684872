"""tf-deraindrop: the Attentive GAN for raindrop removal in TensorFlow 2 / Keras 3.

`import tf_deraindrop` registers the project's Keras classes (layers, models,
losses), so that `keras.models.load_model("generator.keras")` finds them.

Example:
    >>> import tf_deraindrop
    >>> derainer = tf_deraindrop.load_derainer("gen.pkl")  # or .keras, .tflite  # doctest: +SKIP
    >>> clean = derainer.derain(rainy_uint8_rgb)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import sys

__version__ = "0.1.0"

__all__ = [
    "Discriminator",
    "Generator",
    "LiteGenerator",
    "derain",
    "import_official_checkpoint",
    "load_derainer",
    "load_generator",
]

_LAZY = {
    "Discriminator": "tf_deraindrop.models",
    "Generator": "tf_deraindrop.models",
    "LiteGenerator": "tf_deraindrop.models",
    "derain": "tf_deraindrop.inference.keras",
    "load_derainer": "tf_deraindrop.inference.loading",
    "load_generator": "tf_deraindrop.inference.loading",
    "import_official_checkpoint": "tf_deraindrop.official.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tf_deraindrop' has no attribute {name!r}")


def register_keras_classes() -> None:
    """Imports every module that registers a Keras class (idempotent)."""
    for module in ("tf_deraindrop.layers", "tf_deraindrop.models", "tf_deraindrop.losses"):
        importlib.import_module(module)


def _running_a_tool() -> bool:
    """Whether this process is one of the project's command-line tools (`python -m ...`)."""
    # While `python -m tf_deraindrop.<tool>` imports this package, `sys.argv[0]`
    # is still "-m"; afterwards `__main__` carries the tool's module name.
    if sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0]) == "deraindrop":
        return True
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return bool(spec and spec.name.split(".")[0] == "tf_deraindrop")


# The tools import what they need themselves, so that their `--help` answers
# without loading Keras and TensorFlow. Every other import registers the
# classes at once, as a Keras user loading a `.keras` file expects.
if not _running_a_tool():
    register_keras_classes()
