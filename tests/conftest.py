"""Shared test fixtures: quiet TensorFlow, the real photos in ../shared, small sizes."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _one_thread_per_worker() -> None:
    """One TensorFlow thread per pytest-xdist worker when there are as many workers as cores.

    The workers already keep every core busy, and TensorFlow's own thread pools on top of
    them only add switching (a part of the suite took 13 % longer with them). Set before
    TensorFlow loads; child processes inherit it.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and workers >= (os.cpu_count() or 1):
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
            os.environ.setdefault(name, "1")


_one_thread_per_worker()

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def generator_file(tmp_path_factory) -> Path:
    """An untrained generator saved as `.keras`, for the CLI tests' plumbing."""
    from tf_deraindrop.models import Generator

    generator = Generator()
    generator.build((None, None, None, 3))
    path = tmp_path_factory.mktemp("weights") / "g.keras"
    generator.save(path)
    return path


@pytest.fixture(scope="session")
def real_raindrops_dir() -> Path:
    """`../shared/data/real_raindrops` (two real 720 x 480 rainy photos), or skip."""
    path = SHARED_DATA / "real_raindrops"
    if not (path / "case1.jpg").is_file():
        pytest.skip(f"real raindrop photos not found at {path}")
    return path


@pytest.fixture(scope="session")
def raindrop_pairs_dir() -> Path:
    """`../shared/data/raindrop_pairs` (one real pair in the Raindrop layout), or skip."""
    path = SHARED_DATA / "raindrop_pairs"
    if not (path / "data" / "0_rain.png").is_file():
        pytest.skip(f"real raindrop pair not found at {path}")
    return path


@pytest.fixture(scope="session")
def calibration_dir(request, tmp_path_factory) -> str:
    """Rainy photos for a TFLite export: the real ones when present, else synthetic scenes."""
    try:
        return str(request.getfixturevalue("real_raindrops_dir"))
    except pytest.skip.Exception:
        from tf_deraindrop.export.samples import synthetic_images
        from tf_deraindrop.utils.images import write_image

        folder = tmp_path_factory.mktemp("calibration")
        for i, image in enumerate(synthetic_images(3, 96, 128, seed=5)):
            write_image(folder / f"scene{i}.png", image)
        return str(folder)


@pytest.fixture(scope="module")
def official_checkpoint(request, tmp_path_factory) -> str:
    """A generator checkpoint in the authors' format with He-initialised random weights.

    Seeded by the test module's `GENERATOR_SEED` (0 without one). Random
    weights make outputs vary across the image, so accuracy checks mean something.
    """
    from reference.torch_generator import save_random_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "gen.pkl"
    save_random_checkpoint(path, seed=getattr(request.module, "GENERATOR_SEED", 0))
    return str(path)


@pytest.fixture(scope="module")
def generator(official_checkpoint):
    """The `Generator` imported from `official_checkpoint` (a module may define its own)."""
    from tf_deraindrop.official.checkpoint import import_official_checkpoint

    return import_official_checkpoint(official_checkpoint)


@pytest.fixture(scope="module")
def samples(request):
    """3 synthetic calibration scenes at the test module's `H x W` (int8 export tests)."""
    from tf_deraindrop.export.samples import synthetic_images

    return synthetic_images(3, request.module.H, request.module.W, seed=2)


@pytest.fixture(scope="module")
def held_out(request):
    """A synthetic scene at the module's `H x W` that the calibration does not see."""
    from tf_deraindrop.export.samples import synthetic_images

    return synthetic_images(1, request.module.H, request.module.W, seed=8)[0]


@pytest.fixture(scope="module")
def frozen(generator, request):
    """The module's `generator`'s export graph frozen at the module's `H x W`."""
    from tf_deraindrop.export.frozen import freeze

    return freeze(generator, request.module.H, request.module.W)
