"""The generator: attentive-recurrent network plus contextual autoencoder."""

from __future__ import annotations

import keras
from keras import ops

from tf_deraindrop.layers import ConvLSTMCell, ResidualBlock, UpsamplingBlock
from tf_deraindrop.layers.conv import conv2d

#: Parameters of the authors' generator (`gen.pkl`), docs/architecture.md, section 1.
GENERATOR_PARAMETERS = 6_244_362


def _conv(filters, kernel_size, name, policy, activation="relu", dilation=1, strides=1):
    # Stride-1 odd kernels with pad (k - 1) / 2 * dilation are Keras "same";
    # the stride-2 convs get an explicit symmetric pad and "valid" instead.
    padding = "same" if strides == 1 else "valid"
    return conv2d(
        filters,
        kernel_size,
        name,
        policy,
        strides=strides,
        dilation=dilation,
        activation=activation,
        padding=padding,
    )


def features_result(taps: dict, maps, outputs, with_result: bool):
    """What `features` returns: the tapped maps in float32, and `call`'s result if asked."""
    features = {name: ops.cast(value, "float32") for name, value in taps.items()}
    if not with_result:
        return features
    floats = [[ops.cast(t, "float32") for t in ts] for ts in (maps, outputs)]
    return features, dict(zip(("attention", "outputs"), floats))


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class Generator(keras.Model):
    """The Attentive GAN generator (Qian et al., CVPR 2018), layer for layer.

    Four steps of the attentive-recurrent network (shared weights) produce
    the attention maps `A_1..A_4` from `A_0 = 0.5`; the contextual autoencoder
    takes the image with `A_4` and returns the side outputs at 1/4 and 1/2
    size and the derained image. Sub-layer names are the checkpoint's
    (`det_conv0`, `conv1`, `diconv3`, `deconv2`, `outframe1`, ...).

    Input: RGB in [0, 1], shape `(B, H, W, 3)`, `H` and `W` multiples of 4.
    Output: `{"attention": [A1, A2, A3, A4], "outputs": [S_quarter, S_half, O]}`,
    always float32, also under a mixed-precision policy.

    Args:
        steps: time steps of the attentive-recurrent network (4 in the paper).
        initial_attention: value of `A_0` everywhere.

    Example:
        >>> generator = Generator()
        >>> result = generator(keras.ops.zeros((1, 64, 64, 3)))
        >>> [tuple(a.shape) for a in result["outputs"]]
        [(1, 16, 16, 3), (1, 32, 32, 3), (1, 64, 64, 3)]
    """

    def __init__(self, steps: int = 4, initial_attention: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.steps = int(steps)
        self.initial_attention = float(initial_attention)
        p = self.dtype_policy

        # Attentive-recurrent network.
        self.det_conv0 = _conv(32, 3, "det_conv0", p)
        self.det_blocks = [
            ResidualBlock(32, nonnegative_inputs=True, name=f"det_conv{i}", dtype=p)
            for i in range(1, 6)
        ]
        self.lstm = ConvLSTMCell(32, name="conv_lstm", dtype=p)
        self.det_conv_mask = _conv(1, 3, "det_conv_mask", p, activation=None)

        # Contextual autoencoder.
        self.pad1 = keras.layers.ZeroPadding2D(1, name="pad1", dtype=p)
        self.conv1 = _conv(64, 5, "conv1", p)
        self.conv2 = _conv(128, 3, "conv2", p, strides=2)
        self.conv3 = _conv(128, 3, "conv3", p)
        self.conv4 = _conv(256, 3, "conv4", p, strides=2)
        self.conv5 = _conv(256, 3, "conv5", p)
        self.conv6 = _conv(256, 3, "conv6", p)
        self.diconvs = [
            _conv(256, 3, f"diconv{i}", p, dilation=d) for i, d in enumerate((2, 4, 8, 16), 1)
        ]
        self.conv7 = _conv(256, 3, "conv7", p)
        self.conv8 = _conv(256, 3, "conv8", p)
        self.outframe1 = _conv(3, 3, "outframe1", p)
        self.deconv1 = UpsamplingBlock(128, name="deconv1", dtype=p)
        self.conv9 = _conv(128, 3, "conv9", p)
        self.outframe2 = _conv(3, 3, "outframe2", p)
        self.deconv2 = UpsamplingBlock(64, name="deconv2", dtype=p)
        self.conv10 = _conv(32, 3, "conv10", p)
        self.output_conv = _conv(3, 3, "output", p, activation=None)

    def build(self, input_shape):
        # Tracing the graph once on a symbolic input builds every layer, with
        # height and width left open.
        channels = input_shape[-1] if input_shape[-1] is not None else 3
        self.call(keras.KerasTensor((None, None, None, channels)))
        self.built = True

    #: The two parts of the network, by attribute name (for fine-tuning one part alone).
    PARTS = {
        "attention": ("det_conv0", "det_blocks", "lstm", "det_conv_mask"),
        "autoencoder": (
            "conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "diconvs", "conv7", "conv8",
            "outframe1", "deconv1", "conv9", "outframe2", "deconv2", "conv10", "output_conv",
        ),
    }  # fmt: skip

    def part_layers(self, part: str) -> list:
        """The layers of `part`: "attention" (attentive-recurrent network) or "autoencoder".

        Example:
            >>> for layer in generator.part_layers("attention"):  # doctest: +SKIP
            ...     layer.trainable = False
        """
        if part not in self.PARTS:
            raise ValueError(f"Unknown part {part!r}; expected one of {', '.join(self.PARTS)}.")
        layers = []
        for name in self.PARTS[part]:
            value = getattr(self, name)
            layers.extend(value if isinstance(value, list) else [value])
        return layers

    def attention_maps(self, image):
        """Runs the attentive-recurrent network: returns `[A_1, ..., A_N]`."""
        # A_0 is made from the image (clip to [a, a]) rather than as a filled
        # tensor: a converter folds a full-resolution constant into the
        # .tflite file, which then weighs megabytes more than the weights.
        attention = ops.minimum(
            ops.maximum(image[..., :1], self.initial_attention), self.initial_attention
        )
        state = None
        maps = []
        for _ in range(self.steps):
            x = self.det_conv0(ops.concatenate([image, attention], axis=-1))
            for block in self.det_blocks:
                x = block(x)
            state = self.lstm(x, state)
            attention = self.det_conv_mask(state[0])
            maps.append(attention)
        return maps

    def autoencoder(self, image, attention, taps: dict | None = None):
        """Runs the contextual autoencoder: returns `[S_quarter, S_half, O]`.

        `taps`, when given, receives the maps the side outputs are made
        from (see `features`); the outputs are the same either way.
        """
        x = self.conv1(ops.concatenate([image, attention], axis=-1))
        res1 = x
        x = self.conv2(self.pad1(x))
        x = self.conv3(x)
        res2 = x
        x = self.conv4(self.pad1(x))
        x = self.conv6(self.conv5(x))
        for diconv in self.diconvs:
            x = diconv(x)
        x = self.conv8(self.conv7(x))
        if taps is not None:
            taps["quarter"] = x
        side_quarter = self.outframe1(x)
        x = self.deconv1(x) + res2
        x = self.conv9(x)
        if taps is not None:
            taps["half"] = x
        side_half = self.outframe2(x)
        x = self.deconv2(x) + res1
        x = self.output_conv(self.conv10(x))
        return [side_quarter, side_half, x]

    def call(self, inputs, training=None):
        # Mirror any change here in export/graph.py (DeployGraph, tests/export/test_graph.py).
        image = ops.cast(inputs, self.compute_dtype)
        maps = self.attention_maps(image)
        outputs = self.autoencoder(image, maps[-1])
        return {
            "attention": [ops.cast(a, "float32") for a in maps],
            "outputs": [ops.cast(o, "float32") for o in outputs],
        }

    def features(self, image, with_result: bool = False):
        """Intermediate feature maps, for feature distillation (`call` is left as it is).

        `"quarter"`: the output of `conv8` (256 channels, 1/4 size), from
        which `outframe1` makes `S_quarter`; `"half"`: the output of `conv9`
        (128 channels, 1/2 size), from which `outframe2` makes `S_half`.
        `LiteGenerator.features` returns its maps of the same roles and sizes.

        Args:
            image: RGB in [0, 1], `(B, H, W, 3)`, `H` and `W` multiples of 4.
            with_result: also return `call`'s result, from the same pass.

        Returns:
            `{"quarter": ..., "half": ...}` (float32), or `(features, result)`
            with `with_result`.

        Example:
            >>> maps = generator.features(keras.ops.zeros((1, 64, 64, 3)))  # doctest: +SKIP
            >>> tuple(maps["quarter"].shape), tuple(maps["half"].shape)  # doctest: +SKIP
            ((1, 16, 16, 256), (1, 32, 32, 128))
        """
        image = ops.cast(image, self.compute_dtype)
        taps = {}
        maps = self.attention_maps(image)
        outputs = self.autoencoder(image, maps[-1], taps)
        return features_result(taps, maps, outputs, with_result)

    def get_config(self):
        config = super().get_config()
        config.update({"steps": self.steps, "initial_attention": self.initial_attention})
        return config
