"""Upsampling block of the contextual autoencoder (`deconv1`, `deconv2`)."""

from __future__ import annotations

import keras
from keras import ops


def reflect_pad_average_pool(x):
    """Reflection pad of one pixel on the left and top, then a 2x2 average pool, stride 1.

    Equal in value to PyTorch's `ReflectionPad2d((1, 0, 1, 0))` followed by
    `AvgPool2d(2, stride=1)`: output pixel `(i, j)` is the mean of input rows
    `i - 1, i` and columns `j - 1, j`, where row and column `-1` reflect to 1.
    It is written as slices, concatenations, adds and multiplies because
    TFLite's XNNPACK delegate takes none of MIRROR_PAD and int8
    AVERAGE_POOL_2D, and a graph split around them runs much slower.

    Args:
        x: tensor `(B, H, W, C)` with `H, W >= 2`.

    Returns:
        A tensor of the same shape.
    """
    above = ops.concatenate([x[:, 1:2], x[:, :-1]], axis=1)
    x = (x + above) * 0.5
    left = ops.concatenate([x[:, :, 1:2], x[:, :, :-1]], axis=2)
    return (x + left) * 0.5


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class UpsamplingBlock(keras.layers.Layer):
    """Transposed conv (4x4, stride 2, pad 1), reflect-pad + 2x2 average pool, ReLU.

    The transposed convolution doubles height and width exactly; Keras'
    `Conv2DTranspose(4, 2, padding="same")` crops one pixel on each side,
    which is PyTorch's `padding=1` (checked against PyTorch in the tests).
    The pad-and-pool that follows smooths the checkerboard pattern of the
    transposed convolution without changing the size.

    Args:
        filters: output channels.

    Example:
        >>> up = UpsamplingBlock(128)
        >>> up(keras.ops.ones((1, 8, 8, 256))).shape
        (1, 16, 16, 128)
    """

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.transposed_conv = keras.layers.Conv2DTranspose(
            filters, 4, strides=2, padding="same", name="transposed_conv", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.transposed_conv.build(input_shape)

    def call(self, inputs):
        return ops.relu(reflect_pad_average_pool(self.transposed_conv(inputs)))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters})
        return config
