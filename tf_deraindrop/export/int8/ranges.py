"""Activation ranges measured in TensorFlow: which tensors get an int8 range, and their min/max.

The TFLite converter's calibrator runs the float graph on its own kernels,
one op at a time, logging every tensor: about 17 s per 480 x 720 sample on a
2-core CPU. Here the same export graph runs in TensorFlow instead (oneDNN,
every core, and in bfloat16 where the CPU computes it natively), and each
tensor that needs an int8 range reduces to its min and max inside the graph
(`record_ranges`).

Which tensors get a range (`quantization_points`): the output of every op
TFLite computes in int8 with a scale of its own, taken where the converter
will have fused it (a convolution's bias and ReLU, an addition's ReLU belong
to the op before them); not the outputs of ops that keep their input's scale
(slices, pads, concatenations of slices, depth-to-space) or that have a
fixed one (sigmoid, tanh); and the input image. A range is the min and max
over every sample, widened to hold 0, as the converter's calibrator does.

Example:
    >>> frozen = freeze(generator, 480, 720)  # doctest: +SKIP
    >>> ranges = record_ranges(frozen, samples)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tf_deraindrop.export.frozen import FrozenGraph, consumers, copy_graph_def

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
