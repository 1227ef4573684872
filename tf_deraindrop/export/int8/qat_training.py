"""One step of quantization-aware fine-tuning (`export.int8.qat`): the graph, its loss, Adam.

`Int8Training` holds the export graph at the crop size with its weights
(and a scale of each activation range) as variables, runs the float graph
and the int8-simulated one on the same crops, and takes one Adam step
(`Adam`) on their difference. `register_range_gradient` gives the
activations' fake quantization the gradient that lets a range shrink as
well as widen.

Example:
    >>> training = Int8Training(frozen_at_crop, ranges, 1, 1e-5, 1.0)  # doctest: +SKIP
    >>> output_error = training.step(crops)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from tf_deraindrop.export.frozen import FrozenGraph
from tf_deraindrop.export.int8.fake_quant import insert_fake_quant, range_nodes
from tf_deraindrop.export.int8.qat_graph import (
    fake_quant_kernel,
    fixed_output_fake_quant,
    weight_groups,
    without_dilation,
)
from tf_deraindrop.export.int8.ranges import quantization_points

#: Gradient registered for the fake quantization of the activations while
#: their ranges are trained (`register_range_gradient`).
RANGE_GRADIENT = "Int8RangeScaleGradient"


class Adam:
    """Adam on a list of `tf.Variable`s (in TF: the export path trains no Keras model)."""

    def __init__(self, variables, learning_rate: float, beta1=0.9, beta2=0.999, epsilon=1e-8):
        import tensorflow as tf

        self.variables = variables
        #: A variable: `qat.fine_tune` lowers it over the steps (cosine decay).
        self.lr = tf.Variable(float(learning_rate), trainable=False)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.t = tf.Variable(0.0, trainable=False)

    def apply(self, gradients) -> None:
        import tensorflow as tf

        self.t.assign_add(1.0)
        correction = tf.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        for var, g, m, v in zip(self.variables, gradients, self.m, self.v):
            if g is None:
                continue
            m.assign(self.beta1 * m + (1 - self.beta1) * g)
            v.assign(self.beta2 * v + (1 - self.beta2) * tf.square(g))
            var.assign_sub(self.lr * correction * m / (tf.sqrt(v) + self.epsilon))


class Int8Training:
    """The export graph at the crop size with its weights as variables, and one training step.

    Args:
        train: the graph frozen at `(batch, crop, crop, 3)`.
        ranges: tensor name to `(min, max)`, the export size's.
        batch: crops per step.
        learning_rate: Adam's step.
        feature_weight: weight of the quantized tensors' loss (`qat.fine_tune`).
        start: the int8 side's starting weights (`train` with corrected
            biases); `train` itself stays the float target.
        range_learning_rate: Adam's step for the log of each range's scale
            (0: the ranges stay).
    """

    def __init__(
        self,
        train: FrozenGraph,
        ranges: dict,
        batch: int,
        learning_rate: float,
        feature_weight,
        start: FrozenGraph | None = None,
        range_learning_rate: float = 0.0,
    ):
        import tensorflow as tf

        self.train = train
        self.points = sorted(ranges)
        if set(quantization_points(train)) != set(self.points):
            raise RuntimeError("the export graph differs between the export and training sizes")
        start = start or train
        simulated, self.outputs = insert_fake_quant(start, ranges)
        if range_learning_rate:
            register_range_gradient()
            for node in simulated.node:
                if node.op == "FakeQuantWithMinMaxVars":
                    node.attr["_gradient_op_type"].s = RANGE_GRADIENT.encode()
        # Differentiated: dilated convolutions undilated, so that the
        # gradient needs no oneDNN kernel (`without_dilation`).
        self.simulated = without_dilation(fixed_output_fake_quant(simulated))
        self.groups = weight_groups(start)
        self.weights = [tf.Variable(value) for _, value, _ in self.groups]
        # An all-zero range widened as insert_fake_quant widens it.
        self.ranges = {p: (low, max(high, low + 1e-6)) for p, (low, high) in ranges.items()}
        self.widths = [max(ranges[p][1] - ranges[p][0], 1e-3) for p in self.points]
        #: Log of each range's scale: a range is trained as a whole, its
        #: zero point kept (`register_range_gradient`).
        self.log_scales = tf.Variable(tf.zeros(len(self.points)))
        self.optimizer = Adam(self.weights, learning_rate)
        self.range_optimizer = Adam([self.log_scales], range_learning_rate)
        self.range_learning_rate = range_learning_rate
        self.learning_rate = learning_rate
        self.feature_weight = feature_weight
        spec = tf.TensorSpec((batch, train.height, train.width, 3), tf.float32)
        #: One optimizer step on a batch of crops; returns the output's squared error.
        self.step = tf.function(self._step, input_signature=[spec])

    def int8_forward(self, x):
        """The output and every quantized tensor with int8 simulated."""
        import tensorflow as tf

        input_map = {self.train.input: x}
        scales = tf.unstack(tf.exp(self.log_scales))
        for point, scale in zip(self.points, scales):
            for name, bound in zip(range_nodes(point), self.ranges[point]):
                input_map[name + ":0"] = bound * scale
        for (kind, _, names), variable in zip(self.groups, self.weights):
            tensor = fake_quant_kernel(variable) if kind == "kernel" else tf.identity(variable)
            input_map.update({name + ":0": tensor for name in names})
        derained, *features = tf.graph_util.import_graph_def(
            self.simulated,
            input_map=input_map,
            return_elements=[self.outputs[0]] + [p.split(":")[0] + "/range:0" for p in self.points],
            name="int8",
        )
        return derained, features

    def float_forward(self, x):
        """The output and every quantized tensor in float: the targets."""
        import tensorflow as tf

        derained, *features = tf.graph_util.import_graph_def(
            self.train.graph_def,
            input_map={self.train.input: x},
            return_elements=[self.train.outputs[0]] + self.points,
            name="float",
        )
        return derained, features

    def _step(self, x):
        import tensorflow as tf

        target, target_features = self.float_forward(x)
        derained, features = self.int8_forward(x)
        # Compared as the outputs are used, clipped to [0, 1]: an untrained
        # generator's output strays far outside, where no error matters.
        output_error = tf.reduce_mean(
            tf.square(tf.clip_by_value(derained, 0.0, 1.0) - tf.clip_by_value(target, 0.0, 1.0))
        )
        # Each quantized tensor against its float value, in units of its
        # range: local targets keep errors from compounding step after step.
        feature_error = tf.add_n(
            [
                tf.reduce_mean(tf.square(f - t)) / (w * w)
                for f, t, w in zip(features, target_features, self.widths)
            ]
        ) / len(self.points)
        loss = output_error + self.feature_weight * feature_error
        # Symbolic gradients: a GradientTape does not see the ops that
        # import_graph_def creates; tf.gradients walks the graph itself.
        stop = [target, *target_features]
        gradients = tf.gradients(loss, self.weights, stop_gradients=stop)
        if self.range_learning_rate:
            # The ranges serve the output alone: pulled by every tensor's
            # own error too, they ended 0.2 dB lower (random weights, 240 x 360).
            range_gradients = tf.gradients(output_error, [self.log_scales], stop_gradients=stop)
            self.range_optimizer.apply(range_gradients)
        self.optimizer.apply(gradients)
        return output_error

    def decay(self, factor: float) -> None:
        """Sets both learning rates to `factor` times their first value."""
        self.optimizer.lr.assign(self.learning_rate * factor)
        self.range_optimizer.lr.assign(self.range_learning_rate * factor)

    def trained_ranges(self) -> dict[str, tuple[float, float]]:
        """Each point's `(min, max)` times its trained scale."""
        scales = np.exp(self.log_scales.numpy())
        return {
            point: (float(low * scale), float(high * scale))
            for point, scale in zip(self.points, scales)
            for low, high in [self.ranges[point]]
        }


_registered = False


def register_range_gradient() -> None:
    """Registers `RANGE_GRADIENT`: LSQ-style gradients for a range's scale.

    The stock gradient of `FakeQuantWithMinMaxVars` reaches min and max only
    from the values they clip, so training can only widen a range. Here the
    range `(s * min, s * max)` is trained through its scale `s` (Esser et
    al. 2020, "Learned Step Size Quantization"): with `q = step * (round(x /
    step) - zero)`, rounding passed straight through and the zero point held,
    `dq/dlog(s) = q - x` inside the range (its rounding error: a smaller
    step lowers it) and the clipped bound outside (clipping less lowers that).
    The input's gradient is the stock one: passed inside, 0 outside.
    """
    global _registered
    if _registered:
        return
    import tensorflow as tf

    _registered = True

    @tf.RegisterGradient(RANGE_GRADIENT)
    def _range_scale_gradient(op, grad):
        x, low, high = op.inputs
        quantized = op.outputs[0]
        # The bounds as the kernel nudges them (zero exactly representable).
        step = (high - low) / 255.0
        zero = tf.clip_by_value(tf.round(-low / step), 0.0, 255.0)
        nudged_low, nudged_high = -zero * step, (255.0 - zero) * step
        inside = tf.logical_and(x >= nudged_low, x <= nudged_high)
        dx = tf.where(inside, grad, tf.zeros_like(grad))
        dq_dlog_scale = tf.where(
            inside, quantized - x, tf.where(x > nudged_high, nudged_high, nudged_low)
        )
        dlog_scale = tf.reduce_sum(grad * dq_dlog_scale)
        # low and high are the calibrated bounds times the scale, so any
        # split with low * dlow + high * dhigh = dlog_scale is exact.
        norm = low * low + high * high
        return dx, dlog_scale * low / norm, dlog_scale * high / norm
