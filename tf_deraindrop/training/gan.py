"""The Attentive GAN as one Keras model with its training step (docs/architecture.md, section 5).

`AttentiveGAN` holds the generator, the discriminator and the (optional) VGG16
perceptual loss. `fit` runs `train_step`: one discriminator update, then one
generator update, on a batch `(rainy, clean, mask)`. `evaluate` runs
`test_step`: PSNR and SSIM (Y channel) of the derained crop against the clean
one. The training loop is TensorFlow's (`tf.GradientTape`), the networks and
losses are `keras.ops`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import ops

from tf_deraindrop import losses, metrics
from tf_deraindrop.models import Discriminator, Generator
from tf_deraindrop.training.distribute import in_multi_worker_mode

#: Names of the loss terms `train_step` returns, in the paper's terms.
GENERATOR_TERMS = ("attention", "multiscale", "perceptual", "g_adversarial", "g_total")
DISCRIMINATOR_TERMS = ("d_adversarial", "map", "d_total")


def _is_loss_scaled(optimizer) -> bool:
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def _loggable(logs: dict) -> dict:
    """The step's results in the shape Keras can reduce over the replicas.

    Across several workers, Keras' TF trainer reduces each result with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on a scalar; there
    each value gets a length-1 axis, which that reduction removes again.
    """
    if in_multi_worker_mode(tf.distribute.get_strategy()):
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}
    return logs


class AttentiveGAN(keras.Model):
    """Generator, discriminator and perceptual loss, trained with `fit`.

    The generator loss is `L_G = gan_weight * L_GAN(O) + L_ATT + L_M + L_P`,
    the discriminator loss `L_D = L_GAN_D + gamma * L_map`, with `L_map` taken
    against the final attention map `A_N`. Losses are per example; each
    replica sums its examples and divides by the global batch size, so that
    the gradients summed over replicas are those of the global mean.

    Args:
        generator: a `Generator`.
        discriminator: a `Discriminator` built for the training crop size.
        perceptual: a `losses.PerceptualLoss`, or `None` to train without `L_P`.

    Example:
        >>> gan = AttentiveGAN(Generator(), Discriminator(crop_size=64),
        ...                    perceptual=losses.PerceptualLoss(weights=None))
        >>> gan.compile(keras.optimizers.Adam(2e-4, 0.5), keras.optimizers.Adam(2e-4, 0.5))
        >>> logs = gan.train_on_batch(...)  # doctest: +SKIP
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        perceptual: losses.PerceptualLoss | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.perceptual = perceptual
        self.crop_size = discriminator.crop_size
        # Counts train steps (batches), also the ones a loss-scale optimizer
        # skips, so that a resumed run continues the same count.
        self.global_step = keras.Variable(
            0, dtype="int64", trainable=False, name="global_step", aggregation="only_first_replica"
        )
        names = [
            n for n in GENERATOR_TERMS + DISCRIMINATOR_TERMS if perceptual or n != "perceptual"
        ]
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.psnr_tracker = keras.metrics.Mean(name="psnr")
        self.ssim_tracker = keras.metrics.Mean(name="ssim")

    def build(self, input_shape=None):
        # Symbolic calls create every sub-layer (a subclassed model's build()
        # may leave them to the first call) without computing anything.
        crop = keras.KerasTensor((None, self.crop_size, self.crop_size, 3))
        self.generator(crop)
        self.discriminator(crop)
        if self.perceptual is not None and not self.perceptual.built:
            # One call builds the layer (its VGG is built already); small on purpose.
            size = min(self.crop_size, 32)
            self.perceptual(ops.zeros((1, size, size, 3)), ops.zeros((1, size, size, 3)))
        self.built = True

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        *,
        theta: float = 0.8,
        lambdas: Sequence[float] = (0.6, 0.8, 1.0),
        gan_weight: float = 0.01,
        gamma: float = 0.05,
        perceptual_weight: float = 1.0,
        saturating_gan: bool = False,
        jit_compile: bool = False,
        **kwargs,
    ):
        """Sets the two optimizers and the loss weights (paper values by default).

        Under `mixed_float16` Keras would wrap only `self.optimizer`; here each
        optimizer is wrapped in its own `LossScaleOptimizer`, so that the
        generator's and the discriminator's losses are scaled separately.

        Args:
            g_optimizer: the generator's optimizer.
            d_optimizer: the discriminator's optimizer.
            theta: attention loss decay per step (0.8).
            lambdas: multi-scale loss weights at 1/4, 1/2 and full size (0.6, 0.8, 1.0).
            gan_weight: weight of the generator's adversarial term (0.01).
            gamma: weight of the discriminator's map loss (0.05).
            perceptual_weight: weight of `L_P` (1, as in the paper's sum).
            saturating_gan: use the paper's `log(1 - D(O))` instead of `-log D(O)`.
            jit_compile: compile the training step with XLA.
        """
        # No optimizer of Keras' own: it would default to an unused RMSprop.
        super().compile(optimizer=None, jit_compile=jit_compile, **kwargs)
        mixed16 = "mixed_float16" in (
            self.generator.dtype_policy.name,
            self.discriminator.dtype_policy.name,
        )
        if mixed16 and not _is_loss_scaled(g_optimizer):
            g_optimizer = keras.optimizers.LossScaleOptimizer(g_optimizer, name="g_loss_scale")
        if mixed16 and not _is_loss_scaled(d_optimizer):
            d_optimizer = keras.optimizers.LossScaleOptimizer(d_optimizer, name="d_loss_scale")
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.theta = float(theta)
        self.lambdas = tuple(float(v) for v in lambdas)
        self.gan_weight = float(gan_weight)
        self.gamma = float(gamma)
        self.perceptual_weight = float(perceptual_weight)
        self.saturating_gan = bool(saturating_gan)
        if not self.built:
            self.build()
        # Built now rather than on the first step: a checkpoint can then be
        # restored into existing variables, and the loss scale read in the
        # traced step is the variable, not the initial constant.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # compile() has built every network and optimizer. Keras' TF trainer
        # would otherwise pull a batch at the start of every fit() under a
        # strategy and reduce it eagerly, which MultiWorkerMirroredStrategy
        # cannot do. Keras has no public hook for this: this overrides a
        # private method, and test_keras_registration.py fails loudly if it disappears.
        if not self.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self):
        return [*self.loss_trackers.values(), self.psnr_tracker, self.ssim_tracker]

    def call(self, inputs, training=None):
        return self.generator(inputs, training=training)

    def train_step(self, data):
        rainy, clean, mask = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = ops.cast(ops.shape(rainy)[0] * replicas, "float32")

        def reduce(per_example):
            # Summed over replicas by the optimizer, this is the global mean.
            return ops.sum(per_example) / global_batch

        # The generator runs once; its result serves both updates.
        with tf.GradientTape() as g_tape:
            result = self.generator(rainy, training=True)
            attention_maps, outputs = result["attention"], result["outputs"]
            derained = outputs[-1]

            # Discriminator: L_D = L_GAN_D(R, O) + gamma * L_map(D_map(O), D_map(R), A_N).
            with g_tape.stop_recording():
                fake = ops.stop_gradient(derained)
                final_attention = ops.stop_gradient(attention_maps[-1])
                with tf.GradientTape() as d_tape:
                    real_d = self.discriminator(clean, training=True)
                    fake_d = self.discriminator(fake, training=True)
                    d_adversarial = losses.discriminator_adversarial_loss(
                        real_d["logit"], fake_d["logit"]
                    )
                    map_term = losses.map_loss(fake_d["map"], real_d["map"], final_attention)
                    d_total = d_adversarial + self.gamma * map_term
                    d_loss = self.d_optimizer.scale_loss(reduce(d_total))
                d_variables = self.discriminator.trainable_variables
                d_grads = d_tape.gradient(d_loss, d_variables)
                self.d_optimizer.apply_gradients(zip(d_grads, d_variables))

            # Generator: L_G = gan_weight * L_GAN(O) + L_ATT + L_M + L_P, against the updated D.
            fake_logit = self.discriminator(derained, training=True)["logit"]
            g_adversarial = losses.generator_adversarial_loss(fake_logit, self.saturating_gan)
            attention = losses.attention_loss(attention_maps, mask, self.theta)
            multiscale = losses.multiscale_loss(outputs, clean, self.lambdas)
            g_total = self.gan_weight * g_adversarial + attention + multiscale
            terms = {"attention": attention, "multiscale": multiscale}
            if self.perceptual is not None:
                perceptual = self.perceptual(derained, clean)
                g_total = g_total + self.perceptual_weight * perceptual
                terms["perceptual"] = perceptual
            g_loss = self.g_optimizer.scale_loss(reduce(g_total))
        g_variables = self.generator.trainable_variables
        g_grads = g_tape.gradient(g_loss, g_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, g_variables))
        self.global_step.assign_add(1)

        terms.update(
            g_adversarial=g_adversarial,
            g_total=g_total,
            d_adversarial=d_adversarial,
            map=map_term,
            d_total=d_total,
        )
        for name, values in terms.items():
            self.loss_trackers[name].update_state(values)
        logs = {name: tracker.result() for name, tracker in self.loss_trackers.items()}
        logs.update(
            g_lr=ops.cast(self.g_optimizer.learning_rate, "float32"),
            d_lr=ops.cast(self.d_optimizer.learning_rate, "float32"),
            g_loss_scale=self.loss_scale(self.g_optimizer),
            d_loss_scale=self.loss_scale(self.d_optimizer),
        )
        return _loggable(logs)

    def test_step(self, data):
        rainy, clean = data[0], data[1]
        derained = self.generator(rainy, training=False)["outputs"][-1]
        derained = ops.clip(derained, 0.0, 1.0)
        self.psnr_tracker.update_state(metrics.psnr_y_tf(derained, clean))
        self.ssim_tracker.update_state(metrics.ssim_y_tf(derained, clean))
        return _loggable({"psnr": self.psnr_tracker.result(), "ssim": self.ssim_tracker.result()})

    @staticmethod
    def loss_scale(optimizer):
        """The current dynamic loss scale of `optimizer` (1 when it does not scale)."""
        if _is_loss_scaled(optimizer):
            return ops.cast(optimizer.dynamic_scale, "float32")
        return ops.convert_to_tensor(1.0, dtype="float32")

    def checkpoint(self, named_weights: bool = True) -> tf.train.Checkpoint:
        """A `tf.train.Checkpoint` of everything a resumed run needs.

        Networks, both optimizers (moments, iterations, loss scale) and the step
        count; not the frozen VGG, which comes from its weights file.

        Keras 3 on TensorFlow leaves the layers a model keeps in lists and
        dicts (the generator's residual blocks and dilated convolutions) out
        of a `tf.train.Checkpoint` of the model itself (keras-team/keras
        issue 19425). The optimizers reach the trainable ones, but a part
        frozen with `--freeze` would come back at its initial values. So
        every weight of both networks is also saved by its path in its
        network (`named_weights`).

        Args:
            named_weights: False gives the layout of checkpoints written
                before the named weights (`has_named_weights`), to resume them.
        """
        parts = {}
        if named_weights:
            parts["generator_weights"] = weights_by_path(self.generator)
            parts["discriminator_weights"] = weights_by_path(self.discriminator)
        return tf.train.Checkpoint(
            generator=self.generator,
            discriminator=self.discriminator,
            g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer,
            global_step=self.global_step,
            **parts,
        )


def weights_by_path(model: keras.Model) -> dict:
    """`model`'s weights by their path below the model (`det_conv1/conv_a/kernel`).

    The model's own name and the scopes above it are left out: a second
    GAN in one process holds `attentive_gan_1/generator_1/...`, and its
    checkpoint must still match the first one's.
    """
    found = {}
    for weight in model.weights:
        parts = weight.path.split("/")
        if model.name in parts:
            parts = parts[parts.index(model.name) + 1 :]
        path = "/".join(parts)
        if path in found:
            raise ValueError(f"{model.name} has two weights at {path}; checkpoints need one")
        found[path] = weight
    return found


def has_named_weights(prefix: str) -> bool:
    """Whether the checkpoint at `prefix` holds the named weights of `AttentiveGAN.checkpoint`."""
    return any(name.startswith("generator_weights/") for name, _ in tf.train.list_variables(prefix))
