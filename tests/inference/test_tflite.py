"""LiteDerainer: tiling with overlap, seam blending, frames of any size, like `derain`."""

from __future__ import annotations

import numpy as np
import pytest

from tf_deraindrop.export import tflite
from tf_deraindrop.export.samples import synthetic_images
from tf_deraindrop.inference.keras import derain
from tf_deraindrop.inference.tflite import LiteDerainer
from tf_deraindrop.inference.tiling import positions, tile_and_blend
from tf_deraindrop.metrics import psnr

H, W = 32, 48
GENERATOR_SEED = 4  # of the conftest's `generator`


@pytest.fixture(scope="module")
def model(generator, tmp_path_factory):
    path = tmp_path_factory.mktemp("lite") / "m.tflite"
    tflite.export_tflite(
        generator, str(path), H, W, with_attention=True, progress=False, log=lambda _: None
    )
    return str(path)


def frame(h, w, seed=0):
    return (synthetic_images(1, h, w, seed=seed)[0] * 255 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("size", [(100, 37), (32, 48), (7, 300), (257, 1000)])
def test_tiles_cover_the_frame_with_overlap(size):
    for length, tile in zip(size, (32, 48)):
        starts = positions(length, tile, 8)
        assert starts[0] == 0 and starts[-1] == max(0, length - tile)
        assert all(b - a <= tile - 8 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("size", [(32, 48), (20, 30), (90, 61), (33, 200)])
def test_blending_an_identity_gives_the_image_back(size):
    image = np.random.default_rng(1).random((*size, 3), dtype=np.float32)
    out = tile_and_blend(lambda t: t, image, (H, W), overlap=12)
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_seams_are_ramps_not_steps():
    # Each tile returns a different constant: the blend must pass from one
    # to the next gradually, at most (jump / overlap) per pixel.
    counter = iter(range(1000))
    out = tile_and_blend(
        lambda t: np.full(t.shape[:2] + (1,), float(next(counter))),
        np.zeros((32, 200, 3), np.float32),
        (32, 48),
        overlap=16,
    )[0, :, 0]
    steps = np.abs(np.diff(out))
    assert out[0] == 0 and out[-1] == max(out) > 0
    assert steps.max() <= 1 / 16 + 1e-9


def test_frame_of_the_model_size_is_one_full_pass(model, generator):
    image = frame(H, W)
    ours, attention = LiteDerainer(model).derain(image, return_attention=True)
    keras, keras_attention = derain(generator, image, return_attention=True)
    assert ours.dtype == np.uint8 and ours.shape == (H, W, 3)
    assert np.abs(ours.astype(int) - keras).max() <= 1  # float rounding at .5
    np.testing.assert_allclose(attention, keras_attention, atol=1e-4)


def test_smaller_frame_is_padded_like_derain(model, generator):
    image = frame(29, 45, seed=2)
    ours = LiteDerainer(model).derain(image)
    assert ours.shape == (29, 45, 3)
    # derain pads to multiples of 4 by reflection, here to the model's size.
    assert np.abs(ours.astype(int) - derain(generator, image)).max() <= 1


@pytest.mark.parametrize("size", [(21, 30), (61, 90), (7, 100)])
def test_any_frame_is_the_keras_result_with_the_same_tiles(model, generator, size):
    # Smaller than the model (padded further than derain's multiple of 4),
    # larger (tiled), or too thin to reflect: LiteDerainer pads and tiles as
    # derain does when given the model's tile size, so the two agree.
    image = frame(*size, seed=5)
    derainer = LiteDerainer(model)
    ours, attention = derainer.derain(image, return_attention=True)
    keras, keras_attention = derain(
        generator, image, return_attention=True, tile=derainer.tile_size, overlap=derainer.overlap
    )
    assert ours.shape == keras.shape == (*size, 3)
    assert np.abs(ours.astype(int) - keras).max() <= 1
    np.testing.assert_allclose(attention, keras_attention, atol=1e-4)


def test_larger_frame_is_tiled_and_close_to_a_full_pass(model, generator):
    image = frame(56, 88, seed=3)
    derainer = LiteDerainer(model, overlap=16)
    ours = derainer.derain(image)
    full = derain(generator, image)
    assert ours.shape == full.shape == (56, 88, 3) and ours.dtype == np.uint8
    # Tiles see less context than the full frame; far from tile borders and
    # for a generator with such a wide receptive field, still close.
    assert psnr(ours / 255.0, full / 255.0) > 20


def test_gray_and_float_frames(model):
    derainer = LiteDerainer(model)
    gray = derainer.derain(frame(40, 50)[..., 0])
    floats = derainer.derain(frame(40, 50).astype(np.float32) / 255)
    assert gray.shape == floats.shape == (40, 50, 3)


def test_attention_needs_the_output(generator, tmp_path):
    path = tmp_path / "plain.tflite"
    tflite.export_tflite(
        generator, str(path), 16, 16, verify_model=False, progress=False, log=lambda _: None
    )
    with pytest.raises(ValueError, match="--with-attention"):
        LiteDerainer(path).derain(frame(16, 16), return_attention=True)


def test_low_memory_runs_the_same_model(model, generator, tmp_path):
    # The compiled-model path with transient indirection buffers must give
    # the interpreter's outputs: float I/O with attention, and uint8 I/O.
    uint8_path = tmp_path / "u8.tflite"
    tflite.export_tflite(
        generator, str(uint8_path), H, W, uint8_io=True, progress=False, log=lambda _: None
    )
    image = frame(50, 70, seed=3)
    for path, attention in ((model, True), (str(uint8_path), False)):
        fast = LiteDerainer(path, threads=1)
        small = LiteDerainer(path, threads=1, low_memory=True)
        assert small.low_memory and small.tile_size == fast.tile_size
        if attention:
            (a, map_a), (b, map_b) = (d.derain(image, return_attention=True) for d in (fast, small))
            np.testing.assert_allclose(map_b, map_a, atol=1e-5)
        else:
            a, b = fast.derain(image), small.derain(image)
        assert a.shape == (50, 70, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_low_memory_needs_xnnpack(model):
    with pytest.raises(ValueError, match="low_memory"):
        LiteDerainer(model, low_memory=True, xnnpack=False)
