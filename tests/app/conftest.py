"""Fixtures of the app's tests: a tiny random generator and a small rainy photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained `LiteGenerator` a few thousand parameters big, saved as `.keras`."""
    from tf_deraindrop.models import LiteGenerator

    model = LiteGenerator(half_filters=8, width=12, attention_filters=8, steps=3, dilations=(2, 4))
    model.build((None, None, None, 3))
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A 60 x 90 rainy photo (synthetic drops on a gradient), as a JPEG."""
    from tf_deraindrop.utils.images import write_image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:60, 0:90] / 90.0
    image = np.stack([x, y, 0.5 * (x + y)], axis=-1)
    image += 0.05 * rng.standard_normal(image.shape)
    path = tmp_path_factory.mktemp("photos") / "rainy.jpg"
    write_image(path, np.clip(image, 0, 1).astype(np.float32))
    return path


@pytest.fixture(scope="session")
def not_media(tmp_path_factory) -> Path:
    """A text file named like a photo: judged by what it holds, not its name."""
    path = tmp_path_factory.mktemp("bad") / "notes.jpg"
    path.write_text("not a photo, not a video\n" * 20)
    return path
