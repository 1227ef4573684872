"""One loader for every kind of generator file, and one `Derainer` type to run it.

`load_derainer` takes a `.keras` file, a `.weights.h5` file, the authors'
`gen.pkl` or an exported `.tflite`, and returns an object with
`derain(image, return_attention=False)`, whatever the engine behind it:
`KerasDerainer` (a Keras generator at a chosen precision, tiled on large
photos) or `tf_deraindrop.inference.tflite.LiteDerainer` (LiteRT).

Example:
    >>> derainer = load_derainer("gen.pkl", precision="auto")  # doctest: +SKIP
    >>> clean, attention = derainer.derain(rainy, return_attention=True)  # doctest: +SKIP
    >>> print(derainer.engine)  # doctest: +SKIP
    Keras, bfloat16 (the CPU has avx512_bf16; probe 52.4 dB >= 43 dB)
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np


class WeightsError(Exception):
    """Generator weights that are missing, unreadable or of the wrong kind (the file is named)."""


class Derainer(Protocol):
    """What every engine offers: derain one RGB image of any size."""

    engine: str
    has_attention: bool

    def derain(self, image: np.ndarray, return_attention: bool = False) -> Any: ...


def is_keras_model(model: object) -> bool:
    """Whether `model` is a Keras generator (rather than an engine with its own `derain`)."""
    return hasattr(model, "predict_on_batch")


def load_generator(path: str | os.PathLike):
    """Loads a generator from a `.keras` file, a `.weights.h5` file, or the authors' `gen.pkl`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no generator.

    Example:
        >>> generator = load_generator("generator.keras")  # doctest: +SKIP
    """
    import keras

    from tf_deraindrop.models import Generator, LiteGenerator

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Generator weights not found: {path}")
    _check_kind(path)
    if path.endswith(".keras"):
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as err:
            raise ValueError(f"{path}: not a readable Keras generator ({err})") from err
        if isinstance(model, (Generator, LiteGenerator)):
            return model
        inner = getattr(model, "generator", None)
        if isinstance(inner, (Generator, LiteGenerator)):
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
    from tf_deraindrop.official.checkpoint import import_official_checkpoint

    return import_official_checkpoint(path)


def _check_kind(path: str) -> None:
    """ValueError saying what `path` is when it cannot hold generator weights (from its bytes)."""
    from tf_deraindrop.utils.sniff import ACCEPTED_WEIGHTS, file_kind, is_zip

    if path.endswith(".keras"):
        if not is_zip(path):
            raise ValueError(
                f"{path} is not a Keras zip file (it is {file_kind(path)}); a .keras file is "
                "the zip that keras.Model.save writes"
            )
        return
    if path.endswith(".weights.h5"):
        return
    kind = file_kind(path)
    if kind in ("a Python pickle", "a PyTorch checkpoint (zip)"):
        return
    hint = (
        "; a .tflite export runs with deraindrop predict and deraindrop benchmark"
        if "TensorFlow Lite" in kind
        else ""
    )
    raise ValueError(f"{path} is {kind}, not generator weights: give {ACCEPTED_WEIGHTS}{hint}")


def load_generator_weights(path: str | os.PathLike):
    """The generator in `path` (`.keras`, `.weights.h5` or `gen.pkl`), errors as `WeightsError`.

    The file's existence is checked before TensorFlow is imported.

    Raises:
        WeightsError: the file does not exist or holds no generator.

    Example:
        >>> generator = load_generator_weights("generator.keras")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"generator weights not found: {path}")
    try:
        return load_generator(path)
    except (ValueError, OSError, ImportError) as err:
        raise WeightsError(str(err)) from err


def load_model(weights: str, threads: int | None = None, low_memory: bool = False):
    """A `LiteDerainer` for a `.tflite` file, else the Keras generator, as it is stored.

    Raises:
        WeightsError: missing or unreadable weights (the message names the file).
    """
    if weights.lower().endswith(".tflite"):
        from tf_deraindrop.inference.tflite import LiteDerainer, LiteModelError

        try:
            return LiteDerainer(weights, threads=threads, low_memory=low_memory)
        except LiteModelError as err:
            raise WeightsError(str(err)) from err
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
    return load_generator_weights(weights)


def load_derainer(
    path: str | os.PathLike,
    precision: str = "auto",
    threads: int | None = None,
    low_memory: bool = False,
    **derain_options: Any,
) -> Derainer:
    """Loads any generator file and returns a `Derainer` for it.

    Args:
        path: a `.keras`, `.weights.h5`, the authors' `gen.pkl`, or a `.tflite`.
        precision: `auto`, `float32` or `bfloat16` for a Keras generator; a
            `.tflite` runs at the precision it was exported with (`auto` or
            `float32` accepted).
        threads: CPU threads (None: the engine's default).
        low_memory: `.tflite` only: XNNPACK without its transient buffers.
        **derain_options: for a Keras generator, passed to
            `tf_deraindrop.inference.keras.derain` (`max_pixels`, `tile`, `overlap`).

    Raises:
        WeightsError: the file is missing, unreadable, or cannot run at `precision`.

    Example:
        >>> derainer = load_derainer("derain_int8.tflite", threads=2)  # doctest: +SKIP
    """
    path = os.fspath(path)
    if path.lower().endswith(".tflite"):
        if precision == "bfloat16":
            raise WeightsError(
                f"precision bfloat16: {path} is a .tflite export, which runs at the "
                "precision it was exported with"
            )
        return load_model(path, threads=threads, low_memory=low_memory)
    from tf_deraindrop.inference.keras import KerasDerainer

    generator = load_model(path, threads=threads)
    return KerasDerainer(generator, precision=precision, **derain_options)
