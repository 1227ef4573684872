"""The student, the frozen teacher and their training step, as one Keras model.

`Distiller.train_step` takes a batch of rainy crops and minimises:

* `L1` between the student's and the teacher's outputs at the three scales
  (`S_quarter`, `S_half`, `O`), weighted by the paper's lambdas;
* the student's attention maps `A_1..A_N` against the teacher's final map
  `A_N`, with the paper's theta weighting (`losses.attention_loss`, the
  teacher's map standing where the paper has the binary mask);
* optionally the student's intermediate feature maps, through learned 1x1
  adapters, against the teacher's (`feature_weight`, `features.py`);
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
TERMS = (
    "distill", "attention", "feature", "ground_truth", "perceptual", "g_adversarial", "total",
)  # fmt: skip


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
        adapters: the `FeatureAdapters` of the feature term (with a teacher), or None.

    Example:
        >>> distiller = Distiller(LiteGenerator(), teacher)  # doctest: +SKIP
        >>> distiller.compile(keras.optimizers.Adam(1e-3))  # doctest: +SKIP
    """

    def __init__(
        self, student, teacher=None, discriminator=None, perceptual=None, adapters=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.generator = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.discriminator = discriminator
        self.perceptual = perceptual
        self.adapters = adapters
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
        feature_weight: float = 0.0,
        paired: bool = False,
    ):
        """Sets the optimizers and the loss weights."""
        super().compile(optimizer=None)
        self.g_optimizer, self.d_optimizer = optimizer, d_optimizer
        self.theta, self.lambdas = float(theta), tuple(float(v) for v in lambdas)
        self.attention_weight, self.gt_weight = float(attention_weight), float(gt_weight)
        self.perceptual_weight = float(perceptual_weight) if self.perceptual else 0.0
        self.gan_weight = float(gan_weight) if self.discriminator is not None else 0.0
        self.feature_weight = float(feature_weight) if self.adapters is not None else 0.0
        self.paired = bool(paired)
        names = ["distill", "attention", "total"]
        if self.paired:
            names.insert(2, "ground_truth")
        if self.feature_weight:
            names.insert(-1, "feature")
        if self.perceptual_weight:
            names.insert(-1, "perceptual")
        if self.gan_weight:
            names[-1:-1] = ["g_adversarial", "d_adversarial"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.generator.build((None, None, None, 3))
        self.g_optimizer.build(self.student_variables())
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

    def student_variables(self) -> list:
        """What the student's optimizer trains: the student, and the feature term's adapters."""
        variables = list(self.generator.trainable_variables)
        if self.feature_weight:
            variables += self.adapters.trainable_variables
        return variables

    def teacher_targets(self, data):
        """`([T_quarter, T_half, T_out], T_attention, features)`: cached, or the teacher's now.

        `features` (the teacher's feature maps) is None without the feature term.
        """
        if "t_out" in data:
            if self.feature_weight:
                raise ValueError("the feature term needs the teacher on the fly, not a cache")
            outputs = [data["t_quarter"], data["t_half"], data["t_out"]]
            return outputs, data["t_attention"], None
        features = None
        if self.feature_weight:
            features, result = self.teacher.features(data["rainy"], with_result=True)
            features = {name: ops.stop_gradient(value) for name, value in features.items()}
        else:
            result = self.teacher(data["rainy"], training=False)
        outputs = [ops.stop_gradient(ops.cast(o, "float32")) for o in result["outputs"]]
        attention = ops.stop_gradient(ops.cast(result["attention"][-1], "float32"))
        return outputs, attention, features

    def _student(self, rainy):
        """The student's result and, with the feature term, its feature maps (one pass)."""
        if self.feature_weight:
            features, result = self.generator.features(rainy, with_result=True)
            return result, features
        return self.generator(rainy, training=True), None

    def _discriminator_step(self, rainy, real):
        """One step of the discriminator, the teacher's outputs taken as real; its loss."""
        with tf.GradientTape() as d_tape:
            fake = ops.stop_gradient(self.generator(rainy, training=True)["outputs"][-1])
            real_logit = self.discriminator(real, training=True)["logit"]
            fake_logit = self.discriminator(fake, training=True)["logit"]
            d_loss = ops.mean(losses.discriminator_adversarial_loss(real_logit, fake_logit))
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars))
        return d_loss

    def _student_loss(self, data, result, targets, target_attention) -> tuple:
        """`(total, terms)`: the per-example loss of the student's result, and its terms."""
        outputs = result["outputs"]
        distill = sum(lam * _l1(s, t) for lam, s, t in zip(self.lambdas, outputs, targets))
        attention = losses.attention_loss(result["attention"], target_attention, self.theta)
        terms = {"distill": distill, "attention": attention}
        if self.paired:
            gt = losses.multiscale_loss(outputs, data["clean"], self.lambdas)
            terms["ground_truth"] = gt * data["has_clean"]
        if self.perceptual_weight:
            terms["perceptual"] = self.perceptual(outputs[-1], targets[-1])
        if self.gan_weight:
            logit = self.discriminator(outputs[-1], training=True)["logit"]
            terms["g_adversarial"] = losses.generator_adversarial_loss(logit)
        weights = {
            "distill": 1.0,
            "attention": self.attention_weight,
            "ground_truth": self.gt_weight,
            "perceptual": self.perceptual_weight,
            "g_adversarial": self.gan_weight,
        }
        total = sum(weights[name] * value for name, value in terms.items())
        return total, terms

    def train_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # train_on_batch packs (x,)
        rainy = data["rainy"]
        targets, target_attention, target_features = self.teacher_targets(data)
        terms = {}
        if self.gan_weight:
            terms["d_adversarial"] = self._discriminator_step(rainy, targets[-1])
        variables = self.student_variables()
        with tf.GradientTape() as tape:
            result, features = self._student(rainy)
            total, student_terms = self._student_loss(data, result, targets, target_attention)
            terms.update(student_terms)
            if self.feature_weight:
                terms["feature"] = self.adapters.loss(features, target_features)
                total = total + self.feature_weight * terms["feature"]
            loss = ops.mean(total)
        self.g_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.global_step.assign_add(1)
        terms["total"] = total
        for name, value in terms.items():
            self.trackers[name].update_state(ops.mean(value))
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        logs["lr"] = ops.cast(self.g_optimizer.learning_rate, "float32")
        return logs

    def checkpoint(self) -> tf.train.Checkpoint:
        """What a resumed run needs: student, optimizer(s), step, adapters (not the teacher)."""
        parts = {
            "generator": self.generator,
            "optimizer": self.g_optimizer,
            "global_step": self.global_step,
        }
        if self.gan_weight:
            parts.update(discriminator=self.discriminator, d_optimizer=self.d_optimizer)
        if self.feature_weight:
            parts["adapters"] = self.adapters
        return tf.train.Checkpoint(**parts)
