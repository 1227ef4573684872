"""Residual block of the attentive-recurrent network."""

from __future__ import annotations

import keras
from keras import ops

from tf_deraindrop.layers.conv import conv2d


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class ResidualBlock(keras.layers.Layer):
    """`x -> ReLU(ReLU(conv(ReLU(conv(x)))) + x)`, the authors' `det_conv1..5`.

    Both convolutions keep the channel count and the size (3x3, stride 1,
    symmetric zero padding 1, which is Keras' `"same"` at stride 1).

    Args:
        filters: channels in and out.
        kernel_size: size of both square convolutions.
        nonnegative_inputs: the caller guarantees `x >= 0` (in the generator
            every block's input comes out of a ReLU). The outer ReLU then acts
            on a sum of two non-negative tensors and is the identity, so it is
            skipped: one full-resolution pass over memory fewer per block.

    Example:
        >>> block = ResidualBlock(32)
        >>> block(keras.ops.ones((1, 16, 16, 32))).shape
        (1, 16, 16, 32)
    """

    def __init__(
        self, filters: int = 32, kernel_size: int = 3, nonnegative_inputs: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.nonnegative_inputs = bool(nonnegative_inputs)
        self.conv_a, self.conv_b = (
            conv2d(filters, kernel_size, name, self.dtype_policy, activation="relu")
            for name in ("conv_a", "conv_b")
        )

    def build(self, input_shape):
        self.conv_a.build(input_shape)
        self.conv_b.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, inputs):
        x = self.conv_b(self.conv_a(inputs)) + inputs
        return x if self.nonnegative_inputs else ops.relu(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "nonnegative_inputs": self.nonnegative_inputs,
            }
        )
        return config
