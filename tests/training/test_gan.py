"""AttentiveGAN: the training step's losses, loss scaling, the validation step, checkpoints."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_deraindrop import metrics
from tf_deraindrop.losses import PerceptualLoss
from tf_deraindrop.models import Discriminator, Generator
from tf_deraindrop.training.finetune import freeze_part
from tf_deraindrop.training.gan import AttentiveGAN, weights_by_path

TERMS = (
    "attention",
    "multiscale",
    "perceptual",
    "g_adversarial",
    "g_total",
    "d_adversarial",
    "map",
    "d_total",
)


#: The smallest crop the discriminator takes: these tests run many steps.
SIZE = 16


def _batch(size=SIZE, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.2, 0.8, (batch, size, size, 3)).astype("float32")
    mask = (rng.random((batch, size, size, 1)) > 0.85).astype("float32")
    rainy = np.clip(clean * (1 - mask) + mask * 0.95, 0, 1).astype("float32")
    return rainy, clean, mask


def _gan(
    size=SIZE, perceptual=True, dtype=None, lr=1e-3, eager=True, seed=1, freeze=None, **compile_args
):
    keras.utils.set_random_seed(seed)
    generator = Generator(dtype=dtype)
    freeze_part(generator, freeze)  # before compile, as a run does
    gan = AttentiveGAN(
        generator,
        Discriminator(crop_size=size, dtype=dtype),
        PerceptualLoss(weights=None, dtype=dtype) if perceptual else None,
    )
    gan.compile(keras.optimizers.Adam(lr, 0.5), keras.optimizers.Adam(lr, 0.5), **compile_args)
    # One or two steps run faster eagerly than traced.
    gan.run_eagerly = eager
    return gan


def test_losses_fall_on_a_fixed_batch():
    gan = _gan(eager=False)
    rainy, clean, mask = _batch()
    history = [gan.train_on_batch(rainy, clean, mask, return_dict=True) for _ in range(12)]
    first, last = history[0], history[-1]
    assert set(TERMS) <= set(first)
    for key in ("g_lr", "d_lr", "g_loss_scale", "d_loss_scale"):
        assert key in first
    # Generator terms it can fit on one batch fall far.
    for name in ("attention", "multiscale", "g_total"):
        assert last[name] < 0.5 * first[name], (name, first[name], last[name])
    assert np.isfinite([last[n] for n in TERMS]).all()
    assert int(gan.global_step.numpy()) == 12
    assert first["g_lr"] == pytest.approx(1e-3)
    assert first["g_loss_scale"] == 1.0


def test_total_losses_are_the_papers_sums():
    gan = _gan(gan_weight=0.5, gamma=2.0, lr=1e-9)
    rainy, clean, mask = _batch(seed=3)
    logs = gan.train_on_batch(rainy, clean, mask, return_dict=True)
    g_expected = 0.5 * logs["g_adversarial"] + logs["attention"] + logs["multiscale"]
    g_expected += logs["perceptual"]
    assert logs["g_total"] == pytest.approx(g_expected, rel=1e-5)
    assert logs["d_total"] == pytest.approx(logs["d_adversarial"] + 2.0 * logs["map"], rel=1e-5)


def test_without_perceptual_loss_the_term_is_left_out():
    gan = _gan(perceptual=False)
    rainy, clean, mask = _batch(batch=1)
    logs = gan.train_on_batch(rainy, clean, mask, return_dict=True)
    assert "perceptual" not in logs
    assert logs["g_total"] == pytest.approx(
        0.01 * logs["g_adversarial"] + logs["attention"] + logs["multiscale"], rel=1e-5
    )


def test_the_step_updates_both_networks():
    gan = _gan(perceptual=False)
    g_before = [w.numpy().copy() for w in gan.generator.trainable_weights]
    d_before = [w.numpy().copy() for w in gan.discriminator.trainable_weights]
    gan.train_on_batch(*_batch(batch=1))
    g_after = [w.numpy() for w in gan.generator.trainable_weights]
    d_after = [w.numpy() for w in gan.discriminator.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(g_before, g_after))
    assert all(not np.array_equal(a, b) for a, b in zip(d_before, d_after))
    assert int(gan.g_optimizer.iterations.numpy()) == int(gan.d_optimizer.iterations.numpy()) == 1


class TinyGenerator(keras.Model):
    """The generator's outputs from two convolutions (float16 convolutions are very
    slow on the CPU, and the test that uses it is about the optimizers)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attend = keras.layers.Conv2D(1, 3, padding="same", dtype=self.dtype_policy)
        self.derain = keras.layers.Conv2D(3, 3, padding="same", dtype=self.dtype_policy)

    def call(self, x, training=None):
        a = self.attend(x)
        o = self.derain(keras.ops.concatenate([x, keras.ops.cast(a, x.dtype)], -1))
        outputs = [keras.ops.image.resize(o, (o.shape[1] // f, o.shape[2] // f)) for f in (4, 2)]
        to32 = [keras.ops.cast(t, "float32") for t in (*outputs, o)]
        return {"attention": [keras.ops.cast(a, "float32")] * 4, "outputs": to32}


class TinyDiscriminator(keras.Model):
    """The discriminator's outputs from a convolution and a dense layer."""

    crop_size = SIZE

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(1, 3, padding="same", dtype=self.dtype_policy)
        self.dense = keras.layers.Dense(1, dtype=self.dtype_policy)

    def call(self, x, training=None):
        d_map = self.conv(x)
        logit = self.dense(keras.ops.mean(d_map, axis=(1, 2)))
        return {"map": keras.ops.cast(d_map, "float32"), "logit": keras.ops.cast(logit, "float32")}


def test_mixed_float16_wraps_each_optimizer_and_logs_its_loss_scale():
    keras.utils.set_random_seed(1)
    policy = "mixed_float16"
    gan = AttentiveGAN(TinyGenerator(dtype=policy), TinyDiscriminator(dtype=policy))
    # One optimizer comes wrapped (a small scale, so that no step overflows), one not.
    g_optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=8)
    gan.compile(g_optimizer, keras.optimizers.Adam(1e-3))
    assert gan.g_optimizer is g_optimizer  # not wrapped twice
    assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert gan.optimizer is None  # no optimizer of Keras' own to wrap
    steps = 3
    logs = [gan.train_on_batch(*_batch(batch=1), return_dict=True) for _ in range(steps)]
    for step in logs:
        assert np.isfinite(step["g_total"]) and np.isfinite(step["d_total"])
    assert [step["g_loss_scale"] for step in logs] == [8.0] * steps
    assert int(gan.g_optimizer.iterations.numpy()) == steps
    # The discriminator's scale starts at 2**15 and halves on every step whose
    # scaled gradients overflow float16, which that step then skips.
    skipped = steps - int(gan.d_optimizer.iterations.numpy())
    assert logs[-1]["d_loss_scale"] == 2.0**15 / 2**skipped
    assert logs[-1]["d_loss_scale"] == float(gan.d_optimizer.dynamic_scale.numpy())
    assert int(gan.global_step.numpy()) == steps


def test_test_step_reports_psnr_and_ssim_of_the_output():
    gan = _gan(perceptual=False)
    rainy, clean, mask = _batch(seed=5)
    logs = gan.evaluate(
        tf.data.Dataset.from_tensors((rainy, clean, mask)), verbose=0, return_dict=True
    )
    output = np.clip(gan.generator(rainy)["outputs"][-1], 0, 1)
    assert logs["psnr"] == pytest.approx(float(np.mean(metrics.psnr_y_tf(output, clean))), rel=1e-4)
    assert logs["ssim"] == pytest.approx(float(np.mean(metrics.ssim_y_tf(output, clean))), rel=1e-4)


def test_checkpoint_holds_weights_optimizer_state_and_step(tmp_path):
    gan = _gan(perceptual=False)
    gan.train_on_batch(*_batch(batch=1))
    path = gan.checkpoint().save(str(tmp_path / "ckpt"))
    other = _gan(perceptual=False)
    other.checkpoint().restore(path).assert_existing_objects_matched()
    assert int(other.global_step.numpy()) == 1
    assert int(other.d_optimizer.iterations.numpy()) == 1
    for a, b in zip(gan.g_optimizer.variables, other.g_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(gan.discriminator.weights, other.discriminator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("part", ["attention", "autoencoder"])
def test_checkpoint_keeps_a_frozen_part(tmp_path, part):
    """No optimizer tracks a frozen layer: the residual blocks and dilated convolutions,
    kept in lists, must still come back (restored into a generator of other weights)."""
    gan = _gan(perceptual=False, freeze=part)
    path = gan.checkpoint().save(str(tmp_path / "ckpt"))
    other = _gan(perceptual=False, freeze=part, seed=2)
    keys = weights_by_path(gan.generator)
    assert any(key.startswith(("det_conv1/", "diconv1/")) for key in keys)  # list-held layers
    other.checkpoint().restore(path).assert_existing_objects_matched()
    for a, b in zip(gan.generator.weights, other.generator.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_a_checkpoint_of_the_old_layout_resumes_unless_a_part_is_frozen(tmp_path):
    """Checkpoints written before the named weights restore through `build.restore`;
    with `--freeze` they lack the frozen part, and the resume says so."""
    from types import SimpleNamespace

    from tf_deraindrop.training.build import TrainError, restore
    from tf_deraindrop.training.config import TrainConfig

    init = SimpleNamespace(requested=False)
    for freeze in (None, "attention"):
        gan = _gan(perceptual=False, freeze=freeze)
        gan.train_on_batch(*_batch(batch=1))
        directory = str(tmp_path / f"checkpoints_{freeze}")
        tf.train.CheckpointManager(gan.checkpoint(named_weights=False), directory, 3).save()
        other = _gan(perceptual=False, seed=2, freeze=freeze)
        if freeze:
            with pytest.raises(TrainError, match="frozen attention part"):
                restore(other, TrainConfig(freeze=freeze), directory, init)
            continue
        assert restore(other, TrainConfig(), directory, init) == 1
        for a, b in zip(gan.generator.weights, other.generator.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
