"""Fixtures of the video tests: the clips, a seeded random generator, an identity model."""

from __future__ import annotations

import pytest

from tests.helpers.video import (
    identity_model,
    make_video,
)


@pytest.fixture(scope="package")
def clips(tmp_path_factory) -> dict[str, str]:
    """The test videos: AAC and rotation, variable frame rate, odd sizes and formats, small."""
    folder = tmp_path_factory.mktemp("clips")
    paths = {
        "aac": folder / "drive.mp4",
        "vfr": folder / "vfr.mkv",
        "odd": folder / "odd.mkv",
        "small": folder / "small.mp4",
        "tiles": folder / "tiles.mkv",
    }
    make_video(paths["aac"], frames=24, audio=True, rotation=90)
    make_video(paths["vfr"], frames=24, vfr=True)
    make_video(paths["odd"], frames=8, size=(97, 131), codec="ffv1", pix_fmt="yuv422p10le")
    make_video(paths["small"], frames=12, size=(32, 48))
    make_video(paths["tiles"], frames=4, size=(37, 53), codec="ffv1", pix_fmt="gray")
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="package")
def generator():
    import keras

    from tf_deraindrop.models import Generator

    keras.utils.set_random_seed(0)
    model = Generator()
    model.build((None, None, None, 3))
    return model


@pytest.fixture(scope="package")
def generator_path(generator, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "generator.keras"
    generator.save(path)
    return str(path)


@pytest.fixture(scope="module")
def identity():
    return identity_model()
