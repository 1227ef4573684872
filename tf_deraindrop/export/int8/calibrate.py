"""int8 calibration with TensorFlow's own kernels: activation ranges in, fake-quant nodes out.

The TFLite converter's calibrator runs the float graph on its own kernels,
one op at a time, logging every tensor: about 17 s per 480 x 720 sample on
this machine. Here the same export graph runs in TensorFlow instead (oneDNN,
every core, and in bfloat16 where the CPU computes it natively), and each
tensor that needs an int8 range reduces to its min and max inside the graph
(`record_ranges`). The ranges go back into the graph as
`FakeQuantWithMinMaxVars` nodes (`insert_fake_quant`), which the converter
reads as fixed ranges: it converts a graph with fake-quant nodes as a
quantization-aware-trained model, without a representative dataset, and
quantizes the weights as post-training int8 does (per channel).

Which tensors get a range (`quantization_points`): the output of every op
TFLite computes in int8 with a scale of its own, taken where the converter
will have fused it (a convolution's bias and ReLU, an addition's ReLU belong
to the op before them); not the outputs of ops that keep their input's scale
(slices, pads, concatenations of slices, depth-to-space) or that have a
fixed one (sigmoid, tanh); and the input image. A range is the min and max
over every sample, widened to hold 0, as the converter's calibrator does.

`calibrated` (and `fixed_range_graph`) also measures, in the same pass,
what evening out the channels of every tensor whose scale can move between
convolutions needs (`tf_deraindrop.export.int8.equalization`), and keeps that where int8
simulated on the samples says it helps. `fixed_range_graph`, the export's
path, then corrects each bias for its int8 kernel (`tf_deraindrop.export.int8.bias_correction`).

Example:
    >>> frozen = freeze(generator, 480, 720)  # doctest: +SKIP
    >>> ranges = record_ranges(frozen, samples)  # doctest: +SKIP
    >>> graph = FakeQuantGraph(frozen, ranges.values)  # doctest: +SKIP
    >>> write_saved_model(graph, "saved_model", 480, 720)  # doctest: +SKIP
    >>> model = convert("saved_model", "int8")  # no representative dataset  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tf_deraindrop.export.frozen import FrozenGraph, consumers, copy_graph_def, freeze, tensor_name
from tf_deraindrop.export.int8.limits import clip_output_range, relu_sum_ranges, saturated_ranges

#: TF ops whose output TFLite quantizes with a scale of its own.
_PRODUCERS = frozenset(
    {
        "Conv2D",
        "DepthwiseConv2dNative",
        "BiasAdd",
        "AddV2",
        "Add",
        "Sub",
        "Mul",
        "Relu",
        "Relu6",
        "MatMul",
        "Placeholder",
    }
)

#: Ops that TFLite fuses into the op producing their input (when it has no other consumer).
_FUSED_FOLLOWERS = {
    "BiasAdd": frozenset({"Conv2D", "DepthwiseConv2dNative", "MatMul"}),
    "Relu": frozenset({"Conv2D", "DepthwiseConv2dNative", "BiasAdd", "AddV2", "Add", "Sub", "Mul"}),
    "Relu6": frozenset({"Conv2D", "DepthwiseConv2dNative", "BiasAdd", "AddV2", "Add", "Mul"}),
}


#: Ops whose outputs are never negative (their range starts at 0 anyway).
_NONNEGATIVE = frozenset({"Relu", "Relu6"})

#: Ops that move values without changing them: a fused follower may sit behind
#: them (SpaceToBatchND -> Conv2D -> BatchToSpaceND -> BiasAdd is one dilated CONV_2D).
_TRANSPARENT = frozenset({"BatchToSpaceND", "SpaceToBatchND", "Reshape", "Squeeze", "Identity"})


def quantization_points(frozen: FrozenGraph) -> list[str]:
    """The tensors that need an int8 range, in graph order (see the module's docstring)."""
    readers = consumers(frozen.graph_def)

    def fused_forward(node) -> bool:
        users = readers.get(node.name + ":0", [])
        while len(users) == 1 and users[0].op in _TRANSPARENT:
            users = readers.get(users[0].name + ":0", [])
        return len(users) == 1 and node.op in _FUSED_FOLLOWERS.get(users[0].op, ())

    points = []
    for node in frozen.graph_def.node:
        name = node.name + ":0"
        if node.op not in _PRODUCERS or fused_forward(node):
            continue
        if name in readers or name in frozen.outputs:
            points.append(name)
    return points


def bfloat16_graph_def(graph_def):
    """A copy of `graph_def` computing in bfloat16 (float32 constants and attributes cast)."""
    import tensorflow as tf

    bf16 = tf.bfloat16.as_datatype_enum
    f32 = tf.float32.as_datatype_enum
    copy = copy_graph_def(graph_def)
    for node in copy.node:
        for key in node.attr:
            if node.attr[key].type == f32:
                node.attr[key].type = bf16
        if node.op == "Const" and node.attr["dtype"].type == bf16:
            value = tf.make_ndarray(node.attr["value"].tensor)
            node.attr["value"].tensor.CopyFrom(
                tf.make_tensor_proto(value.astype(np.float32), dtype=tf.bfloat16)
            )
    return copy


@dataclass
class Ranges:
    """Activation ranges: tensor name to `(min, max)`, and how they were measured.

    Attributes:
        values: the ranges.
        samples: how many samples were run.
        seconds: the time of all of them.
        first: the time of the first (TensorFlow optimizes the graph then).
        precision: `float32` or `bfloat16`.
        cpu_seconds, first_cpu: the same in CPU time (all threads of the process).
        channels: per-channel `(min, max)` arrays of the tensors asked for
            (`record_ranges(channels=...)`), for `tf_deraindrop.export.int8.equalization`.
    """

    values: dict[str, tuple[float, float]]
    samples: int
    seconds: float
    first: float
    precision: str
    cpu_seconds: float = 0.0
    first_cpu: float = 0.0
    channels: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def seconds_per_sample(self) -> float:
        """Time per sample after the first (all samples' if there is one)."""
        if self.samples < 2:
            return self.seconds
        return (self.seconds - self.first) / (self.samples - 1)

    @property
    def cpu_seconds_per_sample(self) -> float:
        """CPU time per sample after the first (all samples' if there is one)."""
        if self.samples < 2:
            return self.cpu_seconds
        return (self.cpu_seconds - self.first_cpu) / (self.samples - 1)


def record_ranges(
    frozen: FrozenGraph,
    samples: Sequence[np.ndarray],
    precision: str = "auto",
    points: Sequence[str] | None = None,
    progress: bool = False,
    channels: Sequence[str] = (),
) -> Ranges:
    """Min and max of every quantization point over `samples`, run in TensorFlow.

    Args:
        frozen: the graph (`freeze`).
        samples: float32 `(H, W, 3)` images at the graph's size.
        precision: `float32`, `bfloat16` (the ranges of a bfloat16 run:
            within its rounding, 3 significant digits, of float32's), or
            `auto` (bfloat16 where the hardware runs it natively,
            `tf_deraindrop.inference.precision.native_bfloat16`).
        points: the tensors (default `quantization_points(frozen)`).
        channels: points whose min and max are also kept per channel (last
            axis), in the same pass (`Ranges.channels`).

    Returns:
        `Ranges` (each widened to hold 0), with the time the samples took.
    """
    import tensorflow as tf
    from tqdm import tqdm

    if precision == "auto":
        from tf_deraindrop.inference.precision import native_bfloat16

        precision = "bfloat16" if native_bfloat16()[0] else "float32"
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision {precision!r}: choose auto, float32 or bfloat16")
    points = list(quantization_points(frozen) if points is None else points)
    graph_def = frozen.graph_def
    dtype = tf.float32
    if precision == "bfloat16":
        graph_def, dtype = bfloat16_graph_def(graph_def), tf.bfloat16

    per_channel = set(channels)

    @tf.function(input_signature=[tf.TensorSpec((1, frozen.height, frozen.width, 3), tf.float32)])
    def extremes(image):
        tensors = tf.graph_util.import_graph_def(
            graph_def,
            input_map={frozen.input: tf.cast(image, dtype)},
            return_elements=points,
            name="record",
        )
        pairs = []
        for name, t in zip(points, tensors):
            # Reduced in their own dtype (min and max of bfloat16 values are exact);
            # a ReLU's minimum is 0, so one pass over the tensor is enough.
            axes = list(range(len(t.shape) - 1)) if name in per_channel else None
            high = tf.reduce_max(t, axis=axes)
            low = tf.zeros_like(high) if t.op.type in _NONNEGATIVE else tf.reduce_min(t, axis=axes)
            pairs.append(tf.cast(tf.stack([low, high]), tf.float32))
        return pairs

    extremes.get_concrete_function()  # trace outside the timed loop
    low: list = [np.inf] * len(points)
    high: list = [-np.inf] * len(points)
    start, cpu_start = time.perf_counter(), time.process_time()
    first = first_cpu = 0.0
    for sample in tqdm(samples, desc="ranges", unit="sample", disable=not progress, leave=False):
        image = np.asarray(sample, np.float32)[None]
        found = [pair.numpy().astype(np.float64) for pair in extremes(image)]
        low = [np.minimum(lo, pair[0]) for lo, pair in zip(low, found)]
        high = [np.maximum(hi, pair[1]) for hi, pair in zip(high, found)]
        first = first or time.perf_counter() - start
        first_cpu = first_cpu or time.process_time() - cpu_start
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    values = {
        name: (float(min(np.min(lo), 0.0)), float(max(np.max(hi), 0.0)))
        for name, lo, hi in zip(points, low, high)
    }
    kept = {name: (lo, hi) for name, lo, hi in zip(points, low, high) if name in per_channel}
    return Ranges(values, len(samples), seconds, first, precision, cpu_seconds, first_cpu, kept)


def range_nodes(point: str) -> tuple[str, str]:
    """Names of the constants holding a point's min and max in `insert_fake_quant`'s graph."""
    node = point.split(":")[0]
    return f"{node}/range/min", f"{node}/range/max"


def insert_fake_quant(
    frozen: FrozenGraph, ranges: dict[str, tuple], num_bits: dict[str, int] | None = None
):
    """A copy of the graph with a `FakeQuantWithMinMaxVars` after each tensor in `ranges`.

    Each one's min and max are constants (`range_nodes`), which training can
    map to variables (`tf_deraindrop.export.int8.qat`). A range given as arrays (one value a
    channel) gets `FakeQuantWithMinMaxVarsPerChannel`; `num_bits` sets a
    tensor's bits other than 8 (`benchmarks/diag_int8_activations.py`).

    Returns:
        `(graph_def, outputs)`: the graph and the names of its two outputs.
    """
    import tensorflow as tf

    graph_def = copy_graph_def(frozen.graph_def)
    renamed = {}
    added = []
    for name, (low, high) in ranges.items():
        per_channel = np.ndim(low) > 0
        if not per_channel and high - low < 1e-6:  # a constant zero tensor: any step holds it
            high = low + 1e-6
        node_name = name.split(":")[0]
        op = "FakeQuantWithMinMaxVarsPerChannel" if per_channel else "FakeQuantWithMinMaxVars"
        fake = tf.compat.v1.NodeDef(name=f"{node_name}/range", op=op)
        fake.input.append(name)
        for const_name, value in zip(range_nodes(name), (low, high)):
            const = tf.compat.v1.NodeDef(name=const_name, op="Const")
            const.attr["dtype"].type = tf.float32.as_datatype_enum
            const.attr["value"].tensor.CopyFrom(
                tf.make_tensor_proto(np.asarray(value, np.float32), tf.float32)
            )
            fake.input.append(const_name)
            added.append(const)
        fake.attr["num_bits"].i = (num_bits or {}).get(name, 8)
        fake.attr["narrow_range"].b = False
        renamed[name] = fake.name + ":0"
        added.append(fake)
    for node in graph_def.node:
        for k, name in enumerate(node.input):
            if not name.startswith("^") and tensor_name(name) in renamed:
                node.input[k] = renamed[tensor_name(name)]
    graph_def.node.extend(added)
    outputs = tuple(renamed.get(name, name) for name in frozen.outputs)
    return graph_def, outputs


class FakeQuantGraph:
    """The frozen graph with fixed int8 ranges, callable like a `DeployGraph`.

    `write_saved_model` converts it through `deploy_graph`: pass an instance
    where it expects a generator.

    Args:
        frozen: the graph (`freeze`).
        ranges: tensor name to `(min, max)` (`record_ranges(...).values`).
        scales: the channel equalization's scales if `frozen` is equalized.
    """

    def __init__(self, frozen: FrozenGraph, ranges: dict[str, tuple[float, float]], scales=()):
        self.frozen = frozen
        self.graph_def, self.outputs = insert_fake_quant(frozen, ranges)
        #: The channel equalization's scales, if `frozen` is equalized (`calibrated`).
        self.scales = list(scales)

    def deploy_graph(self):
        return self

    def __call__(self, image):
        import tensorflow as tf

        derained, attention = tf.graph_util.import_graph_def(
            self.graph_def,
            input_map={self.frozen.input: image},
            return_elements=list(self.outputs),
            name="deploy",
        )
        return derained, attention


#: Calibration samples `calibrated` simulates int8 on to decide on equalization.
CHOICE_SAMPLES = 2

#: How much lower the int8-simulated error of the equalized graph must be
#: for `calibrated` to keep it (0.46 dB): the samples are the ones the
#: ranges come from, and a small gain on them was a loss on a held-out
#: photo (a trained generator at 64 x 96: +0.4 dB on them, -1.1 dB held out).
EQUALIZED_GAIN = 0.9


def calibrated(
    frozen: FrozenGraph,
    samples: Sequence[np.ndarray],
    precision: str = "auto",
    equalize: bool | None = None,
    progress: bool = False,
):
    """`frozen` (channel-equalized where that helps) and its int8 ranges measured on `samples`.

    The ranges are the min and max (as the converter's calibrator), those
    of the sigmoids' and tanhs' inputs clipped where the int8 output
    saturates (`saturated_ranges`), the addends of a ReLU'd sum cut where
    the sum is 0 anyway (`relu_sum_ranges`), the derained image's cut to
    [0, 1] (`clip_output_range`).

    Equalization (`tf_deraindrop.export.int8.equalization`) first brings the channels of each
    tensor that ReLUs, additions and convolutions allow to one range (the
    float graph computes the same), measured in the same pass. It lifts
    the activations' int8 precision but coarsens the weights of a channel
    it lifts (the next kernel's input channel shrinks and keeps its output
    channel's step): +2.2 dB on the random-weight generator, -1.5 dB on a
    trained one, at 480 x 720. So with `equalize=None` (the default) both
    graphs are simulated in int8 on the first `CHOICE_SAMPLES` samples
    (`tf_deraindrop.export.int8.simulate`) and the equalized one is kept only if its
    error is below `EQUALIZED_GAIN` times the other's; `True` or `False`
    forces it.

    Returns:
        `(graph, values, recorded, scales)`: the graph to convert, its
        ranges, the `Ranges` of the run and the equalization's scales
        (empty if not equalized).
    """
    from tf_deraindrop.export.int8.equalization import equalized_ranges

    if equalize is False:
        recorded = record_ranges(frozen, samples, precision, progress=progress)
        return frozen, _limited(frozen, recorded.values), recorded, []
    graph, values, recorded, scales = equalized_ranges(
        frozen, samples, precision, progress=progress
    )
    values = _limited(graph, values)
    if equalize is None and scales:
        from tf_deraindrop.export.int8.simulate import simulated_errors

        plain = _limited(frozen, recorded.values)
        chosen = list(samples[:CHOICE_SAMPLES])
        without, with_ = simulated_errors(frozen, [(frozen, plain), (graph, values)], chosen)
        if with_ > EQUALIZED_GAIN * without:
            return frozen, plain, recorded, []
    return graph, values, recorded, scales


def _limited(frozen: FrozenGraph, values: dict) -> dict:
    """`values` cut by `tf_deraindrop.export.int8.limits` (see `calibrated`)."""
    values = relu_sum_ranges(frozen, saturated_ranges(frozen, values))
    return clip_output_range(frozen, values)


#: Calibration samples the bias correction takes its channel means from (the
#: first ones): the means settle within a few photos, and each costs a float32
#: run of the graph (2 s at 480 x 720 on 2 cores).
BIAS_SAMPLES = 4


def fixed_range_graph(
    generator,
    height: int,
    width: int,
    samples: Sequence[np.ndarray],
    precision: str = "auto",
    progress: bool = False,
    equalize: bool | None = None,
    correct_biases: bool = True,
) -> tuple[FakeQuantGraph, Ranges]:
    """The generator's export graph with int8 ranges measured on `samples` in TensorFlow.

    See `calibrated` for the ranges and `equalize`. With `correct_biases`,
    each convolution's bias then absorbs the mean error of its int8 kernel
    (`tf_deraindrop.export.int8.bias_correction`, on the first `BIAS_SAMPLES` samples): at
    480 x 720, +1.0 dB from float on a held-out photo for a trained
    generator and for a random one (`benchmarks/bench_calibration.py`).

    Example:
        >>> graph, ranges = fixed_range_graph(generator, 480, 720, samples)  # doctest: +SKIP
        >>> write_saved_model(graph, "saved_model", 480, 720)  # doctest: +SKIP
    """
    frozen, values, recorded, scales = calibrated(
        freeze(generator, height, width), samples, precision, equalize, progress
    )
    if correct_biases:
        from tf_deraindrop.export.int8.bias_correction import bias_corrected

        frozen = bias_corrected(frozen, samples[:BIAS_SAMPLES])
    return FakeQuantGraph(frozen, values, scales), recorded
