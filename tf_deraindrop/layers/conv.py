"""The one way the models make a plain convolution layer."""

from __future__ import annotations

import keras


def conv2d(
    filters: int,
    kernel_size: int,
    name: str,
    policy,
    *,
    strides: int = 1,
    dilation: int = 1,
    activation: str | None = None,
    padding: str = "same",
    use_bias: bool = True,
) -> keras.layers.Conv2D:
    """A `Conv2D` named `name` under the dtype policy `policy` (NHWC).

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        name: the layer name (checkpoint import and export find layers by it).
        policy: the dtype policy of the model that owns the layer.
        strides: stride in both directions.
        dilation: dilation rate in both directions.
        activation: a Keras activation name, or None.
        padding: "same" or "valid".
        use_bias: whether the layer has a bias.

    Example:
        >>> conv2d(32, 3, "det_conv0", "float32", activation="relu").filters
        32
    """
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        activation=activation,
        use_bias=use_bias,
        name=name,
        dtype=policy,
    )
