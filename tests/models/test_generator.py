"""Generator shapes, precision, serialization and `derain` on awkward images."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tf_deraindrop.inference.keras import derain, pad_to_multiple
from tf_deraindrop.inference.loading import load_generator
from tf_deraindrop.layers import ConvLSTMCell, ResidualBlock, UpsamplingBlock
from tf_deraindrop.models import Discriminator, Generator
from tf_deraindrop.models.generator import GENERATOR_PARAMETERS


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(0)
    g = Generator()
    g.build((None, None, None, 3))
    return g


def test_parameter_count_and_output_structure(generator):
    assert generator.count_params() == GENERATOR_PARAMETERS == 6_244_362
    result = generator(np.zeros((2, 40, 56, 3), np.float32))
    assert [tuple(a.shape) for a in result["attention"]] == [(2, 40, 56, 1)] * 4
    assert [tuple(o.shape) for o in result["outputs"]] == [
        (2, 10, 14, 3),
        (2, 20, 28, 3),
        (2, 40, 56, 3),
    ]
    assert all(t.dtype == "float32" for v in result.values() for t in v)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_forward_returns_float32_close_to_float32(generator, policy):
    mixed = Generator(dtype=policy)
    mixed.build((None, None, None, 3))
    mixed.set_weights(generator.get_weights())
    assert mixed.compute_dtype != "float32"
    assert all(w.dtype == "float32" for w in mixed.weights)
    image = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    ours = mixed(image)
    ref = generator(image)
    for a, b in zip(ours["outputs"] + ours["attention"], ref["outputs"] + ref["attention"]):
        assert a.dtype == "float32"
        a, b = np.asarray(a), np.asarray(b)
        assert np.all(np.isfinite(a))
        scale = np.abs(b).max() + 1e-3
        assert np.abs(a - b).max() <= 0.1 * scale


def test_mixed_precision_gradients_are_finite():
    import tensorflow as tf

    g = Generator(dtype="mixed_float16")
    x = tf.random.uniform((1, 16, 16, 3))
    with tf.GradientTape() as tape:
        result = g(x)
        loss = sum(tf.reduce_mean(t) for t in result["outputs"] + result["attention"])
    grads = tape.gradient(loss, g.trainable_variables)
    assert all(gr is not None and gr.dtype == tf.float32 for gr in grads)
    assert all(bool(tf.reduce_all(tf.math.is_finite(gr))) for gr in grads)


def test_save_and_load_give_identical_outputs(generator, tmp_path):
    image = np.random.default_rng(1).random((1, 24, 36, 3), dtype=np.float32)
    path = tmp_path / "g.keras"
    generator.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, Generator)
    for a, b in zip(loaded(image)["outputs"], generator(image)["outputs"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(
        np.asarray(load_generator(path)(image)["outputs"][-1]),
        np.asarray(generator(image)["outputs"][-1]),
    )


def test_weights_file_loads(generator, tmp_path):
    path = tmp_path / "g.weights.h5"
    generator.save_weights(path)
    image = np.random.default_rng(2).random((1, 16, 16, 3), dtype=np.float32)
    np.testing.assert_array_equal(
        np.asarray(load_generator(path)(image)["outputs"][-1]),
        np.asarray(generator(image)["outputs"][-1]),
    )


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((37, 50, 3), np.uint8),  # odd sizes
        ((21, 18), np.uint8),  # grayscale
        ((30, 33, 4), np.uint8),  # RGBA
        ((25, 27, 3), np.uint16),  # 16-bit
        ((19, 22, 3), np.float32),  # float in [0, 1]
        ((2, 3, 3), np.uint8),  # smaller than the padding
    ],
)
def test_derain_keeps_size_for_any_image(generator, shape, dtype):
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        image = rng.random(shape, dtype=np.float32)
    else:
        image = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    out = derain(generator, image)
    assert out.dtype == np.uint8
    assert out.shape == shape[:2] + (3,)


def test_derain_crops_back_the_generator_output(generator):
    image = np.random.default_rng(4).random((30, 42, 3), dtype=np.float32)
    out, attention = derain(generator, image, return_attention=True)
    padded = pad_to_multiple(image)
    assert padded.shape == (32, 44, 3)
    np.testing.assert_array_equal(padded[:30, :42], image)
    full = np.asarray(generator(padded[None])["outputs"][-1])[0]
    expected = (np.clip(full[:30, :42], 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert attention.shape == (30, 42)


class _Recorder:
    """Passes batches to a generator and records their shapes."""

    def __init__(self, generator):
        self.generator, self.shapes = generator, []

    def predict_on_batch(self, batch):
        self.shapes.append(batch.shape)
        return self.generator.predict_on_batch(batch)


def test_derain_tiles_an_image_over_max_pixels(generator):
    image = np.random.default_rng(5).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    whole, whole_attention = derain(generator, image, return_attention=True, max_pixels=None)
    recorder = _Recorder(generator)
    tiled, attention = derain(
        recorder, image, return_attention=True, max_pixels=56 * 64, overlap=16
    )
    assert len(recorder.shapes) > 1
    assert all(h * w <= 56 * 64 and h % 4 == 0 == w % 4 for _, h, w, _ in recorder.shapes)
    assert tiled.shape == whole.shape and attention.shape == whole_attention.shape == (90, 130)
    # Blended tiles stay close to the whole pass (less context at the seams).
    mse = np.mean((tiled.astype(float) - whole) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-12)) > 35
    # Within the limit, one pass: the same as before tiling existed.
    recorder.shapes.clear()
    np.testing.assert_array_equal(derain(recorder, image, max_pixels=92 * 132), whole)
    assert recorder.shapes == [(1, 92, 132, 3)]


def test_derain_tile_settings_are_checked(generator):
    image = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="multiples of 4"):
        derain(generator, image, tile=(30, 32))
    with pytest.raises(ValueError, match="max_pixels"):
        derain(generator, image, max_pixels=0)
    with pytest.raises(ValueError, match="too small for an overlap"):
        derain(generator, np.zeros((200, 200, 3), np.uint8), max_pixels=1000, overlap=64)


def test_derain_rejects_bad_arrays(generator):
    with pytest.raises(ValueError, match="shape"):
        derain(generator, np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        derain(generator, np.zeros((4, 4, 3), np.int64))


def test_discriminator_shapes_and_size_error():
    d = Discriminator(crop_size=64)
    out = d(np.zeros((2, 64, 64, 3), np.float32))
    assert tuple(out["map"].shape) == (2, 64, 64, 1)
    assert tuple(out["logit"].shape) == (2, 1)
    assert d.fc1.kernel.shape == (32 * d.feature_size * d.feature_size, 1024)
    with pytest.raises(ValueError, match="built for 64x64"):
        d(np.zeros((1, 48, 48, 3), np.float32))
    assert Discriminator(crop_size=224).feature_size == 14  # 32 x 14 x 14 in the paper


@pytest.mark.parametrize(
    "layer",
    [ConvLSTMCell(16, name="c"), ResidualBlock(8, name="r"), UpsamplingBlock(4, name="u")],
)
def test_layers_round_trip_through_config(layer):
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()


def test_conv_lstm_zero_state_equals_explicit_zeros():
    cell = ConvLSTMCell(8)
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 5)).astype(np.float32)
    h0, c0 = cell(x)
    zeros = np.zeros((1, 6, 6, 8), np.float32)
    h1, c1 = cell(x, (zeros, zeros))
    np.testing.assert_allclose(np.asarray(h0), np.asarray(h1), atol=1e-6)
    np.testing.assert_allclose(np.asarray(c0), np.asarray(c1), atol=1e-6)


def test_residual_block_skips_outer_relu_only_when_that_is_exact():
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((1, 8, 8, 4))).astype(np.float32)
    general = ResidualBlock(4)
    fast = ResidualBlock(4, nonnegative_inputs=True)
    general.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(general.get_weights())
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(general(x)), atol=1e-6)
    negative = -x
    assert np.asarray(general(negative)).min() >= 0
