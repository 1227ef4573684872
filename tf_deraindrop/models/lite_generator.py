"""A real-time student of the generator: the same outputs at a few GFLOP per frame."""

from __future__ import annotations

import keras
from keras import ops

from tf_deraindrop.layers.conv import conv2d
from tf_deraindrop.models.generator import features_result

#: Named sizes (see benchmarks/bench_lite.py for their cost at 480 x 720).
PRESETS: dict[str, dict] = {
    "nano": {
        "half_filters": 12,
        "width": 24,
        "attention_filters": 16,
        "steps": 2,
        "dilations": (2, 4, 8),
    },
    "small": {
        "half_filters": 16,
        "width": 32,
        "attention_filters": 16,
        "steps": 3,
        "dilations": (2, 4, 8, 16),
    },
    "base": {
        "half_filters": 24,
        "width": 48,
        "attention_filters": 24,
        "steps": 3,
        "dilations": (2, 4, 8, 16),
    },
    "large": {
        "half_filters": 32,
        "width": 64,
        "attention_filters": 32,
        "steps": 4,
        "dilations": (1, 2, 4, 8, 16),
    },
}

#: The preset `LiteGenerator()` builds: at 480 x 720 on 2 cores every preset
#: meets the speed goals (benchmarks/results/lite_cpu.txt); "base" is the
#: largest with int8 under half the 100 ms budget and Keras float32 over 50x
#: faster than the full generator, leaving room for slower CPUs.
DEFAULT_PRESET = "base"

#: Gate order of the ConvLSTM (input, forget, cell candidate, output).
GATES = ("i", "f", "g", "o")


def _conv(filters, name, policy, kernel_size=3, strides=1, dilation=1, use_bias=True):
    return conv2d(
        filters, kernel_size, name, policy, strides=strides, dilation=dilation, use_bias=use_bias
    )


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class LiteGenerator(keras.Model):
    """A small generator with the `Generator`'s call contract, for real time on a CPU.

    The authors' generator spends most of its 807 GFLOP per 480 x 720 frame
    at full resolution (the attentive-recurrent network runs four ConvLSTM
    steps there). This one works at 1/4 and 1/2 resolution and returns to
    full size only through depth-to-space:

    * encoder: two stride-2 3x3 convolutions (`enc1` to 1/2, `enc2` to 1/4);
    * attentive-recurrent branch at 1/4: a ConvLSTM of `attention_filters`
      channels unrolled over `steps` steps on features of the encoder; each
      step's attention map `A_t` is a 16-channel convolution of the hidden
      state, rearranged by depth-to-space into a full-size `(H, W, 1)` map
      (each of the 4x4 output pixels has its own kernel, so the map keeps
      drop-sized detail);
    * body at 1/4: residual dilated 3x3 convolutions, fed the encoder
      features plus a projection of the last hidden state (where the
      authors feed `A_N` to their autoencoder);
    * decoder: 3x3 convolutions with four times the channels and
      depth-to-space up to 1/2 (plus the `enc1` skip) and to full size,
      whose 3 channels are a correction added to the input image.
      `S_quarter` and `S_half` are corrections of the input average-pooled
      to 1/4 and 1/2.

    Convolutions over two sources are written as a sum of one convolution
    per source, never over a concatenation, and the ConvLSTM gates are one
    convolution each: a model exported to int8 then gives each tensor its
    own scale (TFLite's int8 CONCATENATION forces one scale on all its
    inputs). The gates' convolution of the step input is computed once,
    since the input is the same at every step. Every op (conv, add, mul,
    logistic, tanh, depth-to-space) runs in XNNPACK in float and int8, so
    the model converts as it is (`deraindrop export`).

    Input: RGB in [0, 1], `(B, H, W, 3)`, `H` and `W` multiples of 4.
    Output: `{"attention": [A_1, ..., A_steps], "outputs": [S_quarter, S_half, O]}`,
    float32, shapes as `Generator`'s.

    Args:
        half_filters: channels at 1/2 resolution.
        width: channels at 1/4 resolution (encoder and body).
        attention_filters: channels of the ConvLSTM state.
        steps: ConvLSTM steps (attention maps returned).
        dilations: dilation of each residual body convolution (its length is
            the body's depth).
        full_filters: 0, or the channels of a full-resolution tail: the
            decoder then ends in `full_filters` channels at full size, added
            to a 3x3 convolution of the image, and a 3x3 convolution to the
            3-channel correction (finer edges, for more memory traffic).

    Example:
        >>> generator = LiteGenerator.from_preset("small")
        >>> result = generator(keras.ops.zeros((1, 64, 64, 3)))
        >>> [tuple(a.shape) for a in result["outputs"]]
        [(1, 16, 16, 3), (1, 32, 32, 3), (1, 64, 64, 3)]
    """

    def __init__(
        self,
        half_filters: int = PRESETS[DEFAULT_PRESET]["half_filters"],
        width: int = PRESETS[DEFAULT_PRESET]["width"],
        attention_filters: int = PRESETS[DEFAULT_PRESET]["attention_filters"],
        steps: int = PRESETS[DEFAULT_PRESET]["steps"],
        dilations: tuple[int, ...] = PRESETS[DEFAULT_PRESET]["dilations"],
        full_filters: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.half_filters = int(half_filters)
        self.width = int(width)
        self.attention_filters = int(attention_filters)
        self.steps = int(steps)
        self.dilations = tuple(int(d) for d in dilations)
        self.full_filters = int(full_filters)
        if min(self.half_filters, self.width, self.attention_filters, self.steps) < 1:
            raise ValueError("LiteGenerator: filters and steps must be at least 1")
        if self.full_filters < 0:
            raise ValueError("LiteGenerator: full_filters must be at least 0")
        p = self.dtype_policy
        a = self.attention_filters

        self.enc1 = _conv(self.half_filters, "enc1", p, strides=2)
        self.enc2 = _conv(self.width, "enc2", p, strides=2)

        self.att_conv = _conv(a, "att_conv", p)
        self.gates_x = {g: _conv(a, f"gate_x_{g}", p) for g in GATES}
        self.gates_h = {g: _conv(a, f"gate_h_{g}", p, use_bias=False) for g in GATES}
        self.mask = _conv(16, "mask", p)

        self.fuse = _conv(self.width, "fuse", p, kernel_size=1)
        self.body = [
            _conv(self.width, f"body{k}", p, dilation=d) for k, d in enumerate(self.dilations)
        ]

        self.side_quarter = _conv(3, "side_quarter", p)
        self.up1 = _conv(4 * self.half_filters, "up1", p)
        self.dec1 = _conv(self.half_filters, "dec1", p)
        self.side_half = _conv(3, "side_half", p)
        if self.full_filters:
            self.up2 = _conv(4 * self.full_filters, "up2", p)
            self.full_image = _conv(self.full_filters, "full_image", p)
            self.full_out = _conv(3, "full_out", p)
        else:
            self.up2 = _conv(12, "up2", p)

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> LiteGenerator:
        """A `LiteGenerator` of one of the `PRESETS` (keyword arguments override it)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **kwargs})

    def build(self, input_shape):
        channels = input_shape[-1] if input_shape[-1] is not None else 3
        self.call(keras.KerasTensor((None, None, None, channels)))
        self.built = True

    def _encode(self, image):
        half = ops.relu(self.enc1(image))
        quarter = ops.relu(self.enc2(half))
        return half, quarter

    def _attention(self, quarter, all_maps: bool, state=None, steps: int | None = None):
        """The ConvLSTM: `(maps, (h, c))`, with every step's full-size map or only the last.

        From `state` (`(h, c)` at 1/4 size) or the zero state, `steps` steps
        (default `self.steps`).
        """
        steps = self.steps if steps is None else int(steps)
        features = ops.relu(self.att_conv(quarter))
        x = {g: self.gates_x[g](features) for g in GATES}
        hidden, cell = (None, None) if state is None else state
        maps = []
        for step in range(steps):
            if hidden is None:  # zero state: no forget gate, no hidden-state convolutions
                i, g, o = ops.sigmoid(x["i"]), ops.tanh(x["g"]), ops.sigmoid(x["o"])
                cell = i * g
            else:
                z = {k: x[k] + self.gates_h[k](hidden) for k in GATES}
                i, f = ops.sigmoid(z["i"]), ops.sigmoid(z["f"])
                g, o = ops.tanh(z["g"]), ops.sigmoid(z["o"])
                cell = f * cell + i * g
            hidden = o * ops.tanh(cell)
            if all_maps or step == steps - 1:
                maps.append(ops.depth_to_space(self.mask(hidden), 4))
        return maps, (hidden, cell)

    def _autoencoder(self, image, half, quarter, hidden, side_outputs: bool, taps=None):
        x = ops.relu(quarter + self.fuse(hidden))
        for conv in self.body:
            x = ops.relu(x + conv(x))
        if taps is not None:  # the maps `features` returns
            taps["quarter"] = x
        sides = []
        if side_outputs:
            sides.append(self.side_quarter(x) + ops.average_pool(image, 4, 4))
        x = ops.relu(ops.depth_to_space(self.up1(x), 2) + half)
        x = ops.relu(self.dec1(x))
        if taps is not None:
            taps["half"] = x
        if side_outputs:
            sides.append(self.side_half(x) + ops.average_pool(image, 2, 2))
        x = ops.depth_to_space(self.up2(x), 2)
        if self.full_filters:
            x = self.full_out(ops.relu(x + self.full_image(image)))
        return sides + [x + image]

    def derain(self, image):
        """`(O, A_N)` alone, without the side outputs and earlier maps (for export).

        Args:
            image: float RGB in [0, 1], `(B, H, W, 3)`.
        """
        image = ops.cast(image, self.compute_dtype)
        half, quarter = self._encode(image)
        maps, (hidden, _) = self._attention(quarter, all_maps=False)
        output = self._autoencoder(image, half, quarter, hidden, side_outputs=False)[-1]
        return ops.cast(output, "float32"), ops.cast(maps[-1], "float32")

    def stream(self, image, state=None):
        """One frame of a video, carrying the ConvLSTM state from the frame before.

        Without `state` (the first frame) the branch runs its `steps` steps
        from the zero state, as `derain`; with the previous frame's state it
        runs one step from it, so each later frame costs one recurrent step
        and the attention evolves smoothly from frame to frame.

        Args:
            image: float RGB in [0, 1], `(B, H, W, 3)`.
            state: `(h, c)` returned for the previous frame, or None.

        Returns:
            `(O, A, (h, c))`: the derained frame, its attention map (float32),
            and the state for the next frame, `(B, H/4, W/4, attention_filters)` each.

        Example:
            >>> state = None
            >>> for frame in frames:  # doctest: +SKIP
            ...     derained, attention, state = generator.stream(frame, state)
        """
        image = ops.cast(image, self.compute_dtype)
        half, quarter = self._encode(image)
        if state is not None:
            state = tuple(ops.cast(t, self.compute_dtype) for t in state)
        maps, state = self._attention(
            quarter, all_maps=False, state=state, steps=None if state is None else 1
        )
        output = self._autoencoder(image, half, quarter, state[0], side_outputs=False)[-1]
        return ops.cast(output, "float32"), ops.cast(maps[-1], "float32"), state

    def state_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Shape of each of `(h, c)`, the ConvLSTM state `stream` carries, for one frame."""
        return (1, height // 4, width // 4, self.attention_filters)

    def deploy_graph(self):
        """A function `image -> (O, A_N)` for export, with the weights as float32 constants.

        The function runs `derain` of a float32 twin of this model (whatever
        its dtype policy) inside a `keras.StatelessScope` that maps each
        variable to its value: traced into a graph, the weights become
        constants, which a converter folds, where variables would reach
        the `.tflite` as READ_VARIABLE ops that int8 calibration cannot run.
        Later changes to the model's weights do not reach the function.

        Example:
            >>> run = generator.deploy_graph()  # doctest: +SKIP
            >>> derained, attention = tf.function(run)(image)  # doctest: +SKIP
        """
        return self._deployed(lambda twin, image: twin.derain(image))

    def deploy_stream_graph(self):
        """A function `(image, h, c) -> (O, A, h, c)` for export: `stream` with a carried state.

        The weights are float32 constants, as in `deploy_graph`. Without
        `h` and `c` (the first frame) the function runs `steps` steps from
        the zero state; with them, one step. The state comes back in float32.

        Example:
            >>> run = generator.deploy_stream_graph()  # doctest: +SKIP
            >>> derained, attention, h, c = tf.function(run)(image, h, c)  # doctest: +SKIP
        """

        def step(twin, image, hidden=None, cell=None):
            state = None if hidden is None else (hidden, cell)
            derained, attention, (hidden, cell) = twin.stream(image, state)
            return derained, attention, ops.cast(hidden, "float32"), ops.cast(cell, "float32")

        return self._deployed(step)

    def _deployed(self, method):
        """`method(twin, *args)` of a float32 twin, its variables mapped to constants."""
        twin = self
        if self.dtype_policy.name != "float32":
            twin = type(self).from_config({**self.get_config(), "dtype": "float32"})
            twin.build((None, None, None, 3))
            twin.set_weights(self.get_weights())
        values = [
            (variable, ops.convert_to_numpy(ops.cast(variable.value, "float32")))
            for variable in twin.variables
        ]

        def run(*args):
            mapping = [(variable, ops.convert_to_tensor(value)) for variable, value in values]
            with keras.StatelessScope(state_mapping=mapping):
                return method(twin, *args)

        return run

    def call(self, inputs, training=None):
        image = ops.cast(inputs, self.compute_dtype)
        half, quarter = self._encode(image)
        maps, (hidden, _) = self._attention(quarter, all_maps=True)
        outputs = self._autoencoder(image, half, quarter, hidden, side_outputs=True)
        return {
            "attention": [ops.cast(a, "float32") for a in maps],
            "outputs": [ops.cast(o, "float32") for o in outputs],
        }

    def features(self, image, with_result: bool = False):
        """Feature maps paired with `Generator.features`' (same names and sizes).

        `"quarter"`: the body's output (`width` channels), from which
        `side_quarter` makes `S_quarter`; `"half"`: `dec1`'s (`half_filters`
        channels), from which `side_half` makes `S_half`. With `with_result`,
        `(features, result)`, `result` as `call`'s, from the same pass.
        """
        image = ops.cast(image, self.compute_dtype)
        taps = {}
        half, quarter = self._encode(image)
        maps, (hidden, _) = self._attention(quarter, all_maps=True)
        outputs = self._autoencoder(image, half, quarter, hidden, True, taps)
        return features_result(taps, maps, outputs, with_result)

    def multiply_adds(self, height: int, width: int) -> int:
        """Multiply-adds of one forward pass of `call` on a `height x width` frame."""
        quarter, half = (height // 4) * (width // 4), (height // 2) * (width // 2)
        a, w, hf = self.attention_filters, self.width, self.half_filters
        macs = half * 9 * 3 * hf + quarter * 9 * hf * w  # encoder
        macs += quarter * 9 * (w * a + 4 * a * a)  # attention features, input half of the gates
        macs += quarter * 9 * 4 * a * a * (self.steps - 1)  # hidden half of the gates
        macs += quarter * 9 * a * 16 * self.steps  # attention maps
        macs += quarter * (a * w + len(self.dilations) * 9 * w * w)  # fuse, body
        macs += quarter * 9 * w * (3 + 4 * hf)  # side_quarter, up1
        f = self.full_filters
        macs += half * 9 * hf * (hf + 3 + 4 * (f or 3))  # dec1, side_half, up2
        macs += 4 * half * 9 * (3 * f + f * 3)  # full_image, full_out
        return int(macs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "half_filters": self.half_filters,
                "width": self.width,
                "attention_filters": self.attention_filters,
                "steps": self.steps,
                "dilations": list(self.dilations),
                "full_filters": self.full_filters,
            }
        )
        return config
