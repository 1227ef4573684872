"""Convolutional LSTM cell of the attentive-recurrent network."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class ConvLSTMCell(keras.layers.Layer):
    """One step of a convolutional LSTM without peepholes, as in the authors' code.

    The four gate convolutions (`conv_i`, `conv_f`, `conv_g`, `conv_o` in the
    checkpoint) are held as one kernel with `4 * filters` outputs in the order
    i, f, g, o: one convolution with 128 outputs keeps the matrix multiply
    wide, where four with 32 each would leave most of a CPU's vector units idle.

    The caller unrolls the time steps (Keras' `ConvLSTM2D` becomes a WHILE
    loop in TFLite, which int8 calibration cannot handle). Passing
    `state=None` means the all-zero initial state; the cell then convolves the
    input alone with the input half of the kernel, which is the same
    arithmetic, and no full-resolution zero tensor exists to be folded into
    an exported model as a constant.

    Args:
        filters: channels of the hidden and cell state.
        kernel_size: size of the square gate convolution.

    Example:
        >>> cell = ConvLSTMCell(32)
        >>> h, c = cell(keras.ops.ones((1, 8, 8, 32)))
        >>> h, c = cell(keras.ops.ones((1, 8, 8, 32)), (h, c))
    """

    def __init__(self, filters: int = 32, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)

    def build(self, inputs_shape, state_shape=None):
        channels = inputs_shape[-1]
        if channels is None:
            raise ValueError("ConvLSTMCell needs a known number of input channels.")
        self.input_channels = int(channels)
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(k, k, self.input_channels + self.filters, 4 * self.filters),
            initializer="glorot_uniform",
        )
        self.bias = self.add_weight(name="bias", shape=(4 * self.filters,), initializer="zeros")

    def call(self, inputs, state=None):
        kernel = ops.cast(self.kernel, self.compute_dtype)
        bias = ops.cast(self.bias, self.compute_dtype)
        if state is None:
            gates = ops.conv(inputs, kernel[:, :, : self.input_channels, :], padding="same")
        else:
            hidden, _ = state
            gates = ops.conv(ops.concatenate([inputs, hidden], axis=-1), kernel, padding="same")
        gates = gates + bias
        i, f, g, o = ops.split(gates, 4, axis=-1)
        cell = ops.sigmoid(i) * ops.tanh(g)
        if state is not None:
            cell = ops.sigmoid(f) * state[1] + cell
        hidden = ops.sigmoid(o) * ops.tanh(cell)
        return hidden, cell

    def compute_output_shape(self, inputs_shape, state_shape=None):
        shape = tuple(inputs_shape[:-1]) + (self.filters,)
        return shape, shape

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size})
        return config
