"""The one map between the authors' checkpoint tensors and the `Generator`'s Keras layers.

The authors' `gen.pkl` holds 35 convolutions, each as `<name>.weight` and
`<name>.bias` in PyTorch's layouts, fed BGR images (docs/architecture.md,
section 7). Everything that goes from one side to the other reads this
module: the checkpoint import (`tf_deraindrop.official.checkpoint`), the export graph
(`tf_deraindrop.export.graph`, which rebuilds the forward pass from the layers by these
names) and the benchmarks (which write a Keras generator back as a
`state_dict` for the PyTorch reference).

Example:
    >>> layers = generator_layers(generator)  # doctest: +SKIP
    >>> kernel, bias = keras_weights("conv1.0", state["conv1.0.weight"], state["conv1.0.bias"])
    >>> layers["conv1.0"].set_weights([kernel, bias])  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Residual blocks of the attentive-recurrent network (`det_conv1` .. `det_conv5`).
DET_BLOCKS = 5
#: The LSTM gates, in the checkpoint's order (`conv_i`, `conv_f`, `conv_g`, `conv_o`).
GATES = "ifgo"
#: Convolutions that take the image (then the attention map) as input channels.
IMAGE_IN = ("det_conv0.0", "conv1.0")
#: Convolutions that output an image.
IMAGE_OUT = ("outframe1.0", "outframe2.0", "output.0")

# Image channels enter as B, G, R then the map and leave as B, G, R; each
# permutation is its own inverse, so it serves both directions.
_SWAP_IN = [2, 1, 0, 3]
_SWAP_OUT = [2, 1, 0]


@dataclass(frozen=True)
class OfficialConv:
    """One convolution of the checkpoint.

    Args:
        name: tensor name prefix, e.g. `"conv1.0"` for `conv1.0.weight`.
        cin, cout: input and output channels.
        k: kernel side.
        transposed: a `ConvTranspose2d` (weight `(cin, cout, k, k)`).
    """

    name: str
    cin: int
    cout: int
    k: int
    transposed: bool = False

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """The PyTorch shape of `<name>.weight`."""
        if self.transposed:
            return (self.cin, self.cout, self.k, self.k)
        return (self.cout, self.cin, self.k, self.k)


def _official_layout() -> tuple[OfficialConv, ...]:
    layout = [OfficialConv("det_conv0.0", 4, 32, 3)]
    for i in range(1, DET_BLOCKS + 1):
        layout += [
            OfficialConv(f"det_conv{i}.0", 32, 32, 3),
            OfficialConv(f"det_conv{i}.2", 32, 32, 3),
        ]
    layout += [OfficialConv(f"conv_{g}.0", 64, 32, 3) for g in GATES]
    layout += [OfficialConv("det_conv_mask.0", 32, 1, 3)]
    layout += [
        OfficialConv("conv1.0", 4, 64, 5),
        OfficialConv("conv2.0", 64, 128, 3),
        OfficialConv("conv3.0", 128, 128, 3),
        OfficialConv("conv4.0", 128, 256, 3),
        OfficialConv("conv5.0", 256, 256, 3),
        OfficialConv("conv6.0", 256, 256, 3),
    ]
    layout += [OfficialConv(f"diconv{i}.0", 256, 256, 3) for i in range(1, 5)]
    layout += [
        OfficialConv("conv7.0", 256, 256, 3),
        OfficialConv("conv8.0", 256, 256, 3),
        OfficialConv("deconv1.0", 256, 128, 4, transposed=True),
        OfficialConv("conv9.0", 128, 128, 3),
        OfficialConv("deconv2.0", 128, 64, 4, transposed=True),
        OfficialConv("conv10.0", 64, 32, 3),
        OfficialConv("outframe1.0", 256, 3, 3),
        OfficialConv("outframe2.0", 128, 3, 3),
        OfficialConv("output.0", 32, 3, 3),
    ]
    return tuple(layout)


#: Every convolution of `gen.pkl`, in the checkpoint's order.
OFFICIAL_LAYOUT = _official_layout()


def official_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of `gen.pkl` with its PyTorch shape (70 tensors)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for conv in OFFICIAL_LAYOUT:
        shapes[f"{conv.name}.weight"] = conv.weight_shape
        shapes[f"{conv.name}.bias"] = (conv.cout,)
    return shapes


def generator_layers(generator) -> dict[str, object]:
    """The Keras convolution of `generator` behind each checkpoint name.

    Args:
        generator: a `tf_deraindrop.models.Generator` (built or not).

    Returns:
        `{name: layer}` in the order of `OFFICIAL_LAYOUT`, each a Keras
        `Conv2D` (or the `Conv2DTranspose` inside an upsampling block).
    """
    g = generator
    by_name = {"det_conv0.0": g.det_conv0, "det_conv_mask.0": g.det_conv_mask}
    for i, block in enumerate(g.det_blocks, 1):
        by_name[f"det_conv{i}.0"], by_name[f"det_conv{i}.2"] = block.conv_a, block.conv_b
    for gate in GATES:
        by_name[f"conv_{gate}.0"] = g.lstm.gates[gate]
    for i in range(1, 11):
        by_name[f"conv{i}.0"] = getattr(g, f"conv{i}")
    for i, layer in enumerate(g.diconvs, 1):
        by_name[f"diconv{i}.0"] = layer
    by_name["deconv1.0"] = g.deconv1.transposed_conv
    by_name["deconv2.0"] = g.deconv2.transposed_conv
    by_name["outframe1.0"], by_name["outframe2.0"] = g.outframe1, g.outframe2
    by_name["output.0"] = g.output_conv
    return {conv.name: by_name[conv.name] for conv in OFFICIAL_LAYOUT}


def _swap_colours(name: str, kernel: np.ndarray, bias: np.ndarray):
    """BGR <-> RGB on the image channels of a Keras-layout kernel (and an output's bias)."""
    if name in IMAGE_IN:
        kernel = kernel[:, :, _SWAP_IN, :]
    if name in IMAGE_OUT:
        kernel, bias = kernel[..., _SWAP_OUT], bias[_SWAP_OUT]
    return kernel, bias


def keras_weights(name: str, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A checkpoint convolution as Keras `(kernel, bias)`, image channels BGR -> RGB.

    `Conv2d` weights `(out, in, kh, kw)` and `ConvTranspose2d` weights
    `(in, out, kh, kw)` both become `(kh, kw, in_or_out, out_or_in)`, the
    layouts of Keras' `Conv2D` and `Conv2DTranspose`: the same transpose.
    """
    kernel, bias = _swap_colours(name, np.transpose(weight, (2, 3, 1, 0)), np.asarray(bias))
    return np.ascontiguousarray(kernel), np.ascontiguousarray(bias)


def official_weights(
    name: str, kernel: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `keras_weights`: Keras `(kernel, bias)` as the checkpoint's tensors."""
    kernel, bias = _swap_colours(name, np.asarray(kernel), np.asarray(bias))
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1))), np.ascontiguousarray(bias)
