"""The paper's losses, checked against hand computations."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tf_deraindrop import losses


def test_attention_loss_weights_later_steps_more():
    mask = np.zeros((2, 4, 4, 1), np.float32)
    maps = [np.full((2, 4, 4, 1), v, np.float32) for v in (1.0, 2.0, 3.0, 4.0)]
    # sum_t 0.8^(4 - t) * MSE(A_t, 0) = 0.512*1 + 0.64*4 + 0.8*9 + 1*16
    expected = 0.512 * 1 + 0.64 * 4 + 0.8 * 9 + 16
    np.testing.assert_allclose(losses.attention_loss(maps, mask), [expected] * 2, rtol=1e-6)


def test_multiscale_loss_resizes_the_target():
    clean = np.full((1, 16, 16, 3), 0.5, np.float32)
    outputs = [np.zeros((1, 4, 4, 3)), np.zeros((1, 8, 8, 3)), np.ones((1, 16, 16, 3))]
    outputs = [o.astype(np.float32) for o in outputs]
    expected = 0.6 * 0.25 + 0.8 * 0.25 + 1.0 * 0.25
    np.testing.assert_allclose(losses.multiscale_loss(outputs, clean), [expected], rtol=1e-6)
    with pytest.raises(ValueError, match="lambdas"):
        losses.multiscale_loss(outputs[:2], clean)


def test_adversarial_losses_on_logits():
    real = np.array([[2.0], [-1.0]], np.float32)
    fake = np.array([[0.5], [3.0]], np.float32)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    np.testing.assert_allclose(
        losses.discriminator_adversarial_loss(real, fake),
        (-np.log(sig(real)) - np.log(1 - sig(fake)))[:, 0],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        losses.generator_adversarial_loss(fake), -np.log(sig(fake))[:, 0], rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.generator_adversarial_loss(fake, saturating=True),
        np.log(1 - sig(fake))[:, 0],
        rtol=1e-5,
    )


def test_map_loss():
    fake_map = np.full((1, 8, 8, 1), 0.5, np.float32)
    real_map = np.full((1, 8, 8, 1), 0.25, np.float32)
    attention = np.ones((1, 8, 8, 1), np.float32)
    np.testing.assert_allclose(
        losses.map_loss(fake_map, real_map, attention), [0.25 + 0.0625], rtol=1e-6
    )


def test_perceptual_loss_zero_for_identical_and_positive_otherwise():
    loss = losses.PerceptualLoss(weights=None)
    rng = np.random.default_rng(0)
    a = rng.random((2, 32, 32, 3), dtype=np.float32)
    assert np.allclose(loss(a, a), 0.0)
    values = np.asarray(loss(a, a[:, ::-1]))
    assert values.shape == (2,) and np.all(values > 0)
    assert not loss.features.trainable


def test_perceptual_loss_preprocessing_is_caffe_bgr():
    loss = losses.PerceptualLoss(weights=None)
    pixel = np.zeros((1, 1, 1, 3), np.float32)
    pixel[..., 0] = 1.0  # pure red
    vgg_input = []
    loss.features.call = lambda x, **kw: vgg_input.append(np.asarray(x)) or [x] * 4
    loss.features_of(pixel)
    # BGR order, 0..255, less the ImageNet means.
    np.testing.assert_allclose(
        vgg_input[0][0, 0, 0], [0 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6
    )


def test_vgg_weights_from_a_local_file(tmp_path):
    keras.utils.set_random_seed(0)
    source = keras.applications.VGG16(include_top=False, weights=None)
    path = tmp_path / "vgg16_notop.weights.h5"
    source.save_weights(path)
    loss = losses.PerceptualLoss(weights=str(path))
    np.testing.assert_array_equal(
        loss.features.get_layer("block2_conv2").get_weights()[0],
        source.get_layer("block2_conv2").get_weights()[0],
    )


def test_vgg_weights_unavailable_is_a_clear_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(losses.VGGWeightsError, match="--vgg-weights"):
        losses.PerceptualLoss(weights="imagenet")
    with pytest.raises(losses.VGGWeightsError, match="not found"):
        losses.PerceptualLoss(weights=str(tmp_path / "missing.h5"))
