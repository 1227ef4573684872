"""The same model under another Keras dtype policy: one helper for every such copy."""

from __future__ import annotations

import keras
import numpy as np


def with_dtype_policy(model: keras.Model, policy: str) -> keras.Model:
    """A new, built model of the same class and config under `policy`, with `model`'s weights.

    The weights are copied as float32 variables: the `mixed_*` policies keep
    variables in float32 and cast them to the compute dtype.

    Args:
        model: a built `Generator` or `LiteGenerator` (any class with `get_config`).
        policy: a Keras dtype policy name (`float32`, `mixed_bfloat16`, ...).

    Example:
        >>> fast = with_dtype_policy(generator, "mixed_bfloat16")  # doctest: +SKIP
    """
    config = model.get_config()
    config["dtype"] = policy
    twin = type(model).from_config(config)
    twin.build((None, None, None, 3))
    twin.set_weights([np.asarray(w, np.float32) for w in model.get_weights()])
    return twin


def float32_generator(generator: keras.Model, copy: bool = False) -> keras.Model:
    """A float32 generator with the weights of `generator` (any dtype policy).

    Returns `generator` itself when it is already float32 (unless `copy`):
    what verification compares against and what a `.keras` file for CPUs and
    TFLite should hold.

    Args:
        generator: a built `Generator`.
        copy: always return a new model, even for a float32 generator (for
            example to save it away from a distribution strategy).

    Example:
        >>> reference = float32_generator(mixed_precision_generator)  # doctest: +SKIP
    """
    if generator.dtype_policy.name == "float32" and not copy:
        return generator
    return with_dtype_policy(generator, "float32")
