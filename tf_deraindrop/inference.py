"""Deraining whole images with a generator, and loading generators from files."""

from __future__ import annotations

import os

import keras
import numpy as np

from tf_deraindrop.images import to_float_rgb, to_uint8
from tf_deraindrop.models import Generator


def pad_to_multiple(image: np.ndarray, multiple: int = 4) -> np.ndarray:
    """Pads `(H, W, C)` at the bottom and right by reflection to multiples of `multiple`.

    The authors' script crops the image instead, losing up to three rows and
    columns; reflecting keeps every pixel and the border statistics natural.
    Images too small to reflect (a side of 1 or 2) are padded symmetrically.
    """
    h, w = image.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image
    mode = "reflect" if h > ph and w > pw else "symmetric"
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode=mode)


def derain(generator: Generator, image: np.ndarray, return_attention: bool = False):
    """Removes raindrops from one image of any size.

    Args:
        generator: a `Generator` (trained, imported or loaded).
        image: RGB, RGBA or grayscale; uint8, uint16 or float in [0, 1]; any size.
        return_attention: also return the final attention map `A_N`, float32
            `(H, W)` (not clipped: the authors' map has no sigmoid).

    Returns:
        uint8 RGB `(H, W, 3)` of the input's size, or `(image, attention)`.

    Example:
        >>> clean = derain(generator, rainy)  # doctest: +SKIP
    """
    rgb = to_float_rgb(image)
    h, w = rgb.shape[:2]
    padded = pad_to_multiple(rgb)[None]
    result = generator.predict_on_batch(padded)
    output = to_uint8(np.asarray(result["outputs"][-1])[0, :h, :w])
    if return_attention:
        return output, np.asarray(result["attention"][-1])[0, :h, :w, 0]
    return output


def load_generator(path: str | os.PathLike) -> Generator:
    """Loads a generator from a `.keras` file, a `.weights.h5` file, or the authors' `gen.pkl`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no generator.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Generator weights not found: {path}")
    if path.endswith(".keras"):
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as err:
            raise ValueError(f"{path}: not a readable Keras generator ({err})") from err
        if isinstance(model, Generator):
            return model
        inner = getattr(model, "generator", None)
        if isinstance(inner, Generator):
            return inner
        raise ValueError(f"{path} holds a {type(model).__name__}, not a Generator.")
    if path.endswith(".weights.h5"):
        generator = Generator()
        generator.build((None, None, None, 3))
        try:
            generator.load_weights(path)
        except Exception as err:
            raise ValueError(f"{path}: not the weights of a Generator ({err})") from err
        return generator
    from tf_deraindrop.checkpoint import import_official_checkpoint

    return import_official_checkpoint(path)
