"""Convolutional LSTM cell of the attentive-recurrent network."""

from __future__ import annotations

import keras
from keras import ops

#: Gate order, as in the checkpoint (`conv_i`, `conv_f`, `conv_g`, `conv_o`).
GATES = ("i", "f", "g", "o")


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class ConvLSTMCell(keras.layers.Layer):
    """One step of a convolutional LSTM without peepholes, as in the authors' code.

    `C = f * C + i * g`, `H = o * tanh(C)`, each gate a 3x3 convolution of
    `concat(x, H)` (sigmoid for i, f, o; tanh for g). The gates are four
    convolutions, each followed by its activation, as in the checkpoint,
    rather than one wide convolution split four ways: TensorFlow's oneDNN path
    fuses an activation into the convolution before it, which saves five
    full-resolution passes over memory per step, and four 32-wide
    convolutions run as fast as one 128-wide one. Under `mixed_bfloat16` the
    sigmoids run in float32 (faster on the CPU; the same output to 0.01 dB).

    The caller unrolls the time steps (Keras' `ConvLSTM2D` becomes a WHILE
    loop in TFLite, which int8 calibration cannot handle). `state=None` means
    the all-zero initial state: the gates then convolve the input alone with
    the input half of their kernels and the forget gate is not computed, the
    same arithmetic without a full-resolution zero tensor that an exporter
    would fold into the model file as a constant.

    Args:
        filters: channels of the hidden and cell state.
        kernel_size: size of the square gate convolutions.

    Example:
        >>> cell = ConvLSTMCell(32)
        >>> h, c = cell(keras.ops.ones((1, 8, 8, 32)))
        >>> h, c = cell(keras.ops.ones((1, 8, 8, 32)), (h, c))
    """

    def __init__(self, filters: int = 32, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.gates = {
            gate: keras.layers.Conv2D(
                filters,
                kernel_size,
                padding="same",
                name=f"conv_{gate}",
                dtype=self.dtype_policy,
            )
            for gate in GATES
        }

    def build(self, inputs_shape, state_shape=None):
        channels = inputs_shape[-1]
        if channels is None:
            raise ValueError("ConvLSTMCell needs a known number of input channels.")
        self.input_channels = int(channels)
        joint = tuple(inputs_shape[:-1]) + (self.input_channels + self.filters,)
        for conv in self.gates.values():
            conv.build(joint)

    def _first_step_gate(self, gate, inputs):
        conv = self.gates[gate]
        kernel = ops.cast(conv.kernel[:, :, : self.input_channels, :], self.compute_dtype)
        z = ops.conv(inputs, kernel, padding="same") + ops.cast(conv.bias, self.compute_dtype)
        return self._activation(z, gate)

    def _activation(self, z, gate: str):
        if gate == "g":
            return ops.tanh(z)
        if self.compute_dtype == "bfloat16":
            # TensorFlow's CPU sigmoid takes about 4x as long on bfloat16 as on
            # float32 (benchmarks/bench_bf16_ops.py); the two casts cost less.
            return ops.cast(ops.sigmoid(ops.cast(z, "float32")), "bfloat16")
        return ops.sigmoid(z)

    def call(self, inputs, state=None):
        if state is None:
            i, g, o = (self._first_step_gate(gate, inputs) for gate in "igo")
            cell = i * g
        else:
            joint = ops.concatenate([inputs, state[0]], axis=-1)
            i, f, g, o = (self._activation(self.gates[gate](joint), gate) for gate in GATES)
            cell = f * state[1] + i * g
        hidden = o * ops.tanh(cell)
        return hidden, cell

    def compute_output_shape(self, inputs_shape, state_shape=None):
        shape = tuple(inputs_shape[:-1]) + (self.filters,)
        return shape, shape

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size})
        return config
