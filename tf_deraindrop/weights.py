"""Loading a generator for a command-line tool: one check and one error type.

Kept free of TensorFlow at import, so a tool can check its arguments before
paying for the import.
"""

from __future__ import annotations

import os


class WeightsError(Exception):
    """The generator weights are missing or unreadable; the message says which file and why."""


def load_generator_weights(path: str | os.PathLike):
    """The `Generator` in `path` (`.keras`, `.weights.h5` or the authors' `gen.pkl`).

    The file's existence is checked before TensorFlow is imported.

    Raises:
        WeightsError: the file does not exist or holds no generator.

    Example:
        >>> generator = load_generator_weights("generator.keras")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"generator weights not found: {path}")
    from tf_deraindrop.inference import load_generator

    try:
        return load_generator(path)
    except (ValueError, OSError, ImportError) as err:
        raise WeightsError(str(err)) from err
