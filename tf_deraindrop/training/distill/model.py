"""The student, the frozen teacher and their training step, as one Keras model.

`Distiller.train_step` takes a batch of rainy crops and minimises:

* `L1` between the student's and the teacher's outputs at the three scales
  (`S_quarter`, `S_half`, `O`), weighted by the paper's lambdas;
* the student's attention maps `A_1..A_N` against the teacher's final map
  `A_N`, with the paper's theta weighting (`losses.attention_loss`, the
  teacher's map standing where the paper has the binary mask);
* with Raindrop-layout pairs, the paper's multi-scale loss against the
  ground truth as well (`gt_weight`);
* optionally the perceptual (VGG16) term against the teacher's output and a
  small adversarial term from a discriminator that takes the teacher's
  outputs as real.

The teacher's outputs come with the batch (cached) or are computed in the
step (on the fly).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import ops

from tf_deraindrop import losses

#: Losses `train_step` reports (those that apply to the run).
TERMS = ("distill", "attention", "ground_truth", "perceptual", "g_adversarial", "total")


def _l1(a, b):
    a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
    return ops.mean(ops.abs(a - b), axis=(1, 2, 3))


class Distiller(keras.Model):
    """Student, teacher (frozen) and the optional discriminator and perceptual loss.

    `generator` is the student (the name the run's callbacks look for).

    Args:
        student: a `LiteGenerator` (or any model with the `Generator` contract).
        teacher: the frozen teacher, or None when every batch brings cached outputs.
        discriminator: a `Discriminator` for the adversarial term, or None.
        perceptual: a `losses.PerceptualLoss`, or None.

    Example:
        >>> distiller = Distiller(LiteGenerator(), teacher)  # doctest: +SKIP
        >>> distiller.compile(keras.optimizers.Adam(1e-3))  # doctest: +SKIP
    """

    def __init__(self, student, teacher=None, discriminator=None, perceptual=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.discriminator = discriminator
        self.perceptual = perceptual
        self.global_step = keras.Variable(0, dtype="int64", trainable=False, name="step")
        self.trackers: dict[str, keras.metrics.Mean] = {}

    def compile(
        self,
        optimizer,
        d_optimizer=None,
        *,
        theta: float = 0.8,
        lambdas: Sequence[float] = (0.6, 0.8, 1.0),
        attention_weight: float = 1.0,
        gt_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        gan_weight: float = 0.0,
        paired: bool = False,
    ):
        """Sets the optimizers and the loss weights."""
        super().compile(optimizer=None)
        self.g_optimizer, self.d_optimizer = optimizer, d_optimizer
        self.theta, self.lambdas = float(theta), tuple(float(v) for v in lambdas)
        self.attention_weight, self.gt_weight = float(attention_weight), float(gt_weight)
        self.perceptual_weight = float(perceptual_weight) if self.perceptual else 0.0
        self.gan_weight = float(gan_weight) if self.discriminator is not None else 0.0
        self.paired = bool(paired)
        names = ["distill", "attention", "total"]
        if self.paired:
            names.insert(2, "ground_truth")
        if self.perceptual_weight:
            names.insert(-1, "perceptual")
        if self.gan_weight:
            names[-1:-1] = ["g_adversarial", "d_adversarial"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.generator.build((None, None, None, 3))
        self.g_optimizer.build(self.generator.trainable_variables)
        if self.gan_weight:
            # A symbolic call creates every layer; build() leaves them to the
            # first call, and the optimizer must know all the variables now.
            crop = self.discriminator.crop_size
            self.discriminator(keras.KerasTensor((None, crop, crop, 3)))
            self.d_optimizer.build(self.discriminator.trainable_variables)
        # Everything is built: Keras must not trace call() on a batch (a dict here).
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=None):
        return self.generator(inputs, training=training)

    def teacher_targets(self, data):
        """`([T_quarter, T_half, T_out], T_attention)`: cached, or the teacher's now."""
        if "t_out" in data:
            return [data["t_quarter"], data["t_half"], data["t_out"]], data["t_attention"]
        result = self.teacher(data["rainy"], training=False)
        outputs = [ops.stop_gradient(ops.cast(o, "float32")) for o in result["outputs"]]
        return outputs, ops.stop_gradient(ops.cast(result["attention"][-1], "float32"))

    def train_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # train_on_batch packs (x,)
        rainy = data["rainy"]
        targets, target_attention = self.teacher_targets(data)
        terms = {}
        if self.gan_weight:
            with tf.GradientTape() as d_tape:
                fake = ops.stop_gradient(self.generator(rainy, training=True)["outputs"][-1])
                real_logit = self.discriminator(targets[-1], training=True)["logit"]
                fake_logit = self.discriminator(fake, training=True)["logit"]
                d_loss = ops.mean(losses.discriminator_adversarial_loss(real_logit, fake_logit))
            d_vars = self.discriminator.trainable_variables
            self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars))
            terms["d_adversarial"] = d_loss
        with tf.GradientTape() as tape:
            result = self.generator(rainy, training=True)
            outputs = result["outputs"]
            distill = sum(lam * _l1(s, t) for lam, s, t in zip(self.lambdas, outputs, targets))
            attention = losses.attention_loss(result["attention"], target_attention, self.theta)
            total = distill + self.attention_weight * attention
            terms.update(distill=distill, attention=attention)
            if self.paired:
                gt = losses.multiscale_loss(outputs, data["clean"], self.lambdas)
                gt = gt * data["has_clean"]
                total = total + self.gt_weight * gt
                terms["ground_truth"] = gt
            if self.perceptual_weight:
                perceptual = self.perceptual(outputs[-1], targets[-1])
                total = total + self.perceptual_weight * perceptual
                terms["perceptual"] = perceptual
            if self.gan_weight:
                logit = self.discriminator(outputs[-1], training=True)["logit"]
                adversarial = losses.generator_adversarial_loss(logit)
                total = total + self.gan_weight * adversarial
                terms["g_adversarial"] = adversarial
            loss = ops.mean(total)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.global_step.assign_add(1)
        terms["total"] = total
        for name, value in terms.items():
            self.trackers[name].update_state(ops.mean(value))
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        logs["lr"] = ops.cast(self.g_optimizer.learning_rate, "float32")
        return logs

    def checkpoint(self) -> tf.train.Checkpoint:
        """What a resumed run needs: student, optimizer(s), step (not the teacher)."""
        parts = {
            "generator": self.generator,
            "optimizer": self.g_optimizer,
            "global_step": self.global_step,
        }
        if self.gan_weight:
            parts.update(discriminator=self.discriminator, d_optimizer=self.d_optimizer)
        return tf.train.Checkpoint(**parts)
