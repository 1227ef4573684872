"""The generator's forward pass, arranged for TFLite and its XNNPACK delegate.

`Generator.call` is written for training; `DeployGraph` computes the same
derained image from the same weights with a graph that converts well:

* Every `conv(concat(a, b))` becomes `conv(a, K_a) + conv(b, K_b)`. TFLite's
  int8 CONCATENATION puts all its inputs on one scale, so the LSTM hidden
  state (in [-1, 1]) would be quantized with the step of the residual
  features (a range of tens), and the image with the step of the unbounded
  attention map. Split, each tensor keeps its own scale, for the same
  multiply-adds.
* Each LSTM gate is its own convolution, so each gate's pre-activation gets
  its own int8 scale (about +1 dB in int8, and no slower in XNNPACK); the
  first step, whose state is zero, convolves the input alone and skips the
  forget gate, so no zero tensor exists to be folded into the file.
* `A_0` comes out of a 1x1 convolution of the image with a zero kernel and
  bias `A_0`: XNNPACK takes it in float and in int8 (it takes neither int8
  MINIMUM/MAXIMUM nor an int8 MUL by zero), and no full-resolution constant
  is folded into the file.
* The image half of `det_conv0` is the same at every step and is computed
  once.
* Each 4x4, stride-2 transposed convolution is one 2x2 convolution with
  four times the outputs (one group per output phase: even or odd row and
  column) over the input padded by one pixel, interleaved by DEPTH_TO_SPACE
  and cropped (see `subpixel_kernel`). The multiply-adds are the same, but
  XNNPACK runs TRANSPOSE_CONV at less than half its convolution rate
  (benchmarks/bench_tflite_ops.py).
* Weights are float32 constants whatever the generator's dtype policy, so a
  generator trained under `mixed_float16` exports a float32 graph; each is
  stored once (kernels are split in numpy, not sliced in the graph), so the
  float32 file weighs the weights' own bytes. The side outputs `S_quarter`
  and `S_half` are training-only and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tf_deraindrop.layers import reflect_pad_average_pool
from tf_deraindrop.official.names import DET_BLOCKS, GATES, generator_layers

# Not plain convolutions of the deploy graph: the transposed convolutions
# (rebuilt as sub-pixel convolutions) and the training-only side outputs;
# the LSTM gates (`conv_*`) are read without their activation.
_SPECIAL = ("deconv1.0", "deconv2.0", "outframe1.0", "outframe2.0")


@dataclass
class _Conv:
    """One convolution with float32 weights, run with `tf.nn` ops."""

    kernel: np.ndarray
    bias: np.ndarray | None
    strides: int = 1
    dilation: int = 1
    padding: str = "SAME"
    relu: bool = True

    def __call__(self, x, relu: bool | None = None):
        y = tf.nn.conv2d(
            x, self.kernel, strides=self.strides, padding=self.padding, dilations=self.dilation
        )
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        if self.relu if relu is None else relu:
            y = tf.nn.relu(y)
        return y

    def split_inputs(self, channels: int) -> tuple[_Conv, _Conv]:
        """Convs over the first `channels` inputs (with the bias) and over the rest (without)."""
        parts = (self.kernel[:, :, :channels], self.kernel[:, :, channels:])
        return tuple(
            _Conv(
                np.ascontiguousarray(kernel),
                bias,
                self.strides,
                self.dilation,
                self.padding,
                relu=False,
            )
            for kernel, bias in zip(parts, (self.bias, None))
        )


def subpixel_kernel(kernel: np.ndarray) -> np.ndarray:
    """A 4x4, stride-2, "same" transposed-conv kernel as one 2x2 conv kernel per output phase.

    `conv2d_transpose(x, K)` puts `K[k] * x[i]` at output row `2i + k - 1`,
    so even rows `2m` get `K[3] x[m - 1] + K[1] x[m]` and odd rows `2m + 1`
    get `K[2] x[m] + K[0] x[m + 1]`: tap `u` of phase `a` is `K[3 - a - 2u]`,
    over a window that starts at `x[m - 1 + a]` (columns alike).

    Over `x` padded by one pixel, a 2x2 "valid" convolution at window `t`
    gives phase `a` of output row `2t - a`. The phases are ordered so that
    DEPTH_TO_SPACE puts that value at row `2t + 1 - a`, that is one row and
    one column after its place: the upsampled image is the DEPTH_TO_SPACE
    output cropped by one pixel on each side.

    Args:
        kernel: `(4, 4, out, in)`, the layout of `tf.nn.conv2d_transpose`.

    Returns:
        `(2, 2, in, 4 * out)`: the phases `(1, 1), (1, 0), (0, 1), (0, 0)`
        (odd or even row, column) in turn along the last axis.
    """
    phases = []
    for a in (1, 0):
        for b in (1, 0):
            taps = kernel[[3 - a, 1 - a]][:, [3 - b, 1 - b]]
            phases.append(np.transpose(taps, (0, 1, 3, 2)))
    return np.ascontiguousarray(np.concatenate(phases, axis=3), np.float32)


def _float32(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), np.float32)


def _from_layer(layer) -> _Conv:
    """A Keras `Conv2D` as a `_Conv` (float32 weights, same stride, dilation, padding)."""
    activation = getattr(layer.activation, "__name__", str(layer.activation))
    if activation not in ("relu", "linear"):
        raise ValueError(f"{layer.name}: unexpected activation {activation!r}")
    return _Conv(
        _float32(layer.kernel),
        _float32(layer.bias) if layer.use_bias else None,
        strides=int(layer.strides[0]),
        dilation=int(layer.dilation_rate[0]),
        padding=layer.padding.upper(),
        relu=activation == "relu",
    )


def _pre_activation(layer) -> _Conv:
    """An LSTM gate's convolution without its sigmoid or tanh (applied in the graph)."""
    return _Conv(_float32(layer.kernel), _float32(layer.bias), relu=False)


class DeployGraph:
    """The generator as a TF function of an image, arranged as described above.

    Args:
        generator: a built `Generator` (any dtype policy). Its weights are
            copied: later changes to the generator do not reach the graph.

    Example:
        >>> graph = DeployGraph(generator)  # doctest: +SKIP
        >>> derained, attention = graph(tf.zeros((1, 64, 64, 3)))  # doctest: +SKIP
    """

    def __init__(self, generator):
        self.steps = int(generator.steps)
        self.initial_attention = float(generator.initial_attention)
        layers = generator_layers(generator)
        plain = [name for name in layers if name not in _SPECIAL and not name.startswith("conv_")]
        conv = {name: _from_layer(layers[name]) for name in plain}
        self.det_conv0_image, self.det_conv0_map = conv["det_conv0.0"].split_inputs(3)
        self.det_blocks = [
            (conv[f"det_conv{i}.0"], conv[f"det_conv{i}.2"]) for i in range(1, DET_BLOCKS + 1)
        ]
        features = self.det_blocks[-1][1].kernel.shape[-1]
        # Per gate: (conv of the step's input with the bias, conv of the hidden state).
        self.gates = {
            gate: _pre_activation(layers[f"conv_{gate}.0"]).split_inputs(features) for gate in GATES
        }
        self.det_conv_mask = conv["det_conv_mask.0"]
        self.conv1_image, self.conv1_map = conv["conv1.0"].split_inputs(3)
        self.encoder = [conv[f"conv{i}.0"] for i in range(2, 7)]
        self.diconvs = [conv[f"diconv{i}.0"] for i in range(1, 5)]
        self.conv7, self.conv8 = conv["conv7.0"], conv["conv8.0"]
        self.deconv1 = self._transposed(layers["deconv1.0"])
        self.conv9 = conv["conv9.0"]
        self.deconv2 = self._transposed(layers["deconv2.0"])
        self.conv10 = conv["conv10.0"]
        self.output_conv = conv["output.0"]

    @staticmethod
    def _transposed(layer):
        kernel = _float32(layer.kernel)
        if kernel.shape[:2] != (4, 4) or tuple(layer.strides) != (2, 2):
            raise ValueError(f"{layer.name}: expected a 4x4 transposed conv with stride 2")
        return subpixel_kernel(kernel), np.tile(_float32(layer.bias), 4)

    @staticmethod
    def _upsample(x, transposed):
        kernel, bias = transposed
        _, h, w, _ = x.shape
        pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
        y = tf.nn.bias_add(tf.nn.conv2d(tf.pad(x, pad), kernel, 1, "VALID"), bias)
        y = tf.nn.depth_to_space(y, 2)[:, 1 : 2 * h + 1, 1 : 2 * w + 1]
        return tf.nn.relu(reflect_pad_average_pool(y))

    def _gate(self, name, x, hidden):
        conv_input, conv_hidden = self.gates[name]
        z = conv_input(x)
        return z if hidden is None else z + conv_hidden(hidden)

    def attention_maps(self, image):
        """`[A_1, ..., A_N]`, as `Generator.attention_maps`."""
        image_part = self.det_conv0_image(image)
        attention = tf.nn.bias_add(
            tf.nn.conv2d(image, np.zeros((1, 1, 3, 1), np.float32), 1, "VALID"),
            np.full((1,), self.initial_attention, np.float32),
        )
        hidden = cell = None
        maps = []
        for _ in range(self.steps):
            with tf.name_scope("det_blocks"):
                x = tf.nn.relu(image_part + self.det_conv0_map(attention))
                for conv_a, conv_b in self.det_blocks:
                    x = tf.nn.relu(conv_b(conv_a(x)) + x)
            with tf.name_scope("gates"):
                i = self._gate("i", x, hidden)
                g = self._gate("g", x, hidden)
                o = self._gate("o", x, hidden)
                f = None if cell is None else self._gate("f", x, hidden)
            with tf.name_scope("lstm"):
                i, g, o = tf.sigmoid(i), tf.tanh(g), tf.sigmoid(o)
                cell = i * g if cell is None else tf.sigmoid(f) * cell + i * g
                hidden = o * tf.tanh(cell)
            with tf.name_scope("mask"):
                attention = self.det_conv_mask(hidden)
            maps.append(attention)
        return maps

    def autoencoder(self, image, attention):
        """The derained image `O`, as `Generator.autoencoder(...)[-1]`."""
        x = tf.nn.relu(self.conv1_image(image) + self.conv1_map(attention))
        res1 = x
        pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
        conv2, conv3, conv4, conv5, conv6 = self.encoder
        x = conv3(conv2(tf.pad(x, pad)))
        res2 = x
        x = conv6(conv5(conv4(tf.pad(x, pad))))
        for diconv in self.diconvs:
            x = diconv(x)
        x = self.conv8(self.conv7(x))
        x = self._upsample(x, self.deconv1) + res2
        x = self.conv9(x)
        x = self._upsample(x, self.deconv2) + res1
        return self.output_conv(self.conv10(x))

    def __call__(self, image):
        """Returns `(O, A_N)` for a float32 image `(1, H, W, 3)` of static shape."""
        # Name scopes (here and in attention_maps) let a quantization
        # debugger pick parts of the graph by name.
        with tf.name_scope("attentive_recurrent"):
            attention = self.attention_maps(image)[-1]
        with tf.name_scope("autoencoder"):
            return self.autoencoder(image, attention), attention
