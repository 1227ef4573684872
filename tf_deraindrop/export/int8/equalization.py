"""Channel equalization: an int8 tensor's channels brought to one range, the float graph kept.

TFLite quantizes an activation with one scale for the whole tensor, so a
channel that spans a fifth of its tensor's range gets a fifth of the int8
steps. In the attentive-recurrent network of an untrained generator the
median channel of a residual block spans 15-20 % of the block's range; with
a scale per channel (which TFLite does not offer for activations) the
int8-simulated output of the random-weight generator rises from 30.4 to
35.1 dB at 240 x 360.

The same effect without per-channel scales: divide channel `c` of a tensor
by `s_c` where it is made (the output channel of its convolution's kernel
and bias) and multiply it back where it is read (the input channel of the
next convolutions' kernels). ReLUs, zero padding, additions and the
space-to-batch moves of dilated convolutions commute with a positive
per-channel scale, so the float graph computes the same (to rounding),
while a weak channel now spans as much of the int8 range as the strong
ones. This is the cross-layer equalization of Nagel et al. ("Data-Free
Quantization", 2019), with the scales taken from the activations measured
on the calibration samples rather than from the weights.

A scaling group (`scaling_groups`) is the set of tensors that must share
one channel scale: those linked by ReLUs, additions, biases and moves, with
the convolutions that make them and those that read them. A group reaching
any other op (a sigmoid, a multiplication, a concatenation, depth-to-space,
an output) is left alone. Weights the recurrent steps share (equal
constants) get equal scales: their groups merge.

Example:
    >>> graph, ranges, recorded, scales = equalized_ranges(frozen, samples)  # doctest: +SKIP
    >>> crops = with_channel_scales(freeze(generator, 256, 256), scales)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from tf_deraindrop.export.frozen import FrozenGraph, consumers, copy_graph_def, tensor_name

#: Ops whose output channel `c` depends only on their input's channel `c`,
#: linearly and with zero kept at zero.
_CHANNELWISE = frozenset({"Relu", "Identity", "Pad", "SpaceToBatchND", "BatchToSpaceND"})

#: How far a weak channel is lifted at most (its scale's floor).
DEFAULT_FLOOR = 0.25


@dataclass
class ScalingGroup:
    """Tensors sharing one per-channel scale, and the constants that carry it.

    Attributes:
        tensors: tensor names whose channel `c` is divided by `s_c`.
        made_by: kernel constants whose output channel (last axis) is divided.
        biases: bias constants divided.
        read_by: kernel constants whose input channel (axis 2) is multiplied.
        scalable: False where the group reaches an op that does not commute.
    """

    tensors: set[str] = field(default_factory=set)
    made_by: set[str] = field(default_factory=set)
    biases: set[str] = field(default_factory=set)
    read_by: set[str] = field(default_factory=set)
    scalable: bool = True

    def merge(self, other: ScalingGroup) -> None:
        self.tensors |= other.tensors
        self.made_by |= other.made_by
        self.biases |= other.biases
        self.read_by |= other.read_by
        self.scalable = self.scalable and other.scalable


class _Graph:
    """The frozen graph's nodes, readers and outputs, for the walk of `_grow`."""

    def __init__(self, frozen: FrozenGraph):
        self.nodes = {node.name: node for node in frozen.graph_def.node}
        self.readers = consumers(frozen.graph_def)
        self.outputs = set(frozen.outputs)

    def constant(self, name: str) -> str | None:
        """The Const node behind input `name` when nothing else reads it."""
        node = self.nodes.get(name.split(":")[0])
        if node is None or node.op != "Const" or len(self.readers.get(tensor_name(name), [])) != 1:
            return None
        return node.name


def _grow(graph: _Graph, seed: str) -> ScalingGroup:
    """The scaling group holding tensor `seed`."""
    group = ScalingGroup()
    todo = [seed]
    while todo:
        name = todo.pop()
        if name in group.tensors:
            continue
        group.tensors.add(name)
        node = graph.nodes[name.split(":")[0]]
        if name in graph.outputs or not name.endswith(":0"):
            group.scalable = False
        _walk_up(graph, node, group, todo)
        _walk_down(graph, name, group, todo)
    return group


def _walk_up(graph: _Graph, node, group: ScalingGroup, todo: list[str]) -> None:
    """Where the tensor made by `node` gets its channels from."""
    inputs = [tensor_name(name) for name in node.input if not name.startswith("^")]
    if node.op in _CHANNELWISE:
        todo.append(inputs[0])
    elif node.op in ("AddV2", "Add"):
        todo.extend(inputs)
    elif node.op == "BiasAdd" and (bias := graph.constant(inputs[1])):
        group.biases.add(bias)
        todo.append(inputs[0])
    elif node.op == "Conv2D" and (kernel := graph.constant(inputs[1])):
        group.made_by.add(kernel)
    else:
        group.scalable = False


def _walk_down(graph: _Graph, name: str, group: ScalingGroup, todo: list[str]) -> None:
    """Where the channels of tensor `name` go."""
    for reader in graph.readers.get(name, []):
        first = tensor_name(reader.input[0]) == name
        if reader.op == "Conv2D" and first and (kernel := graph.constant(reader.input[1])):
            group.read_by.add(kernel)
        elif (
            reader.op in _CHANNELWISE
            or reader.op in ("AddV2", "Add")
            or (reader.op == "BiasAdd" and first)
        ):
            todo.append(reader.name + ":0")
        else:
            group.scalable = False


def scaling_groups(frozen: FrozenGraph) -> list[ScalingGroup]:
    """The graph's scaling groups that can be scaled (see the module's docstring).

    Groups whose kernels or biases are equal constants (the recurrent steps'
    copies of one weight) are merged, so tied weights stay tied.
    """
    import tensorflow as tf

    graph = _Graph(frozen)
    found: list[ScalingGroup] = []
    covered: set[str] = set()
    for node in frozen.graph_def.node:
        seed = node.name + ":0"
        if node.op == "Conv2D" and seed not in covered:
            found.append(_grow(graph, seed))
            covered |= found[-1].tensors

    def key(name: str, role: str) -> str | None:
        value = tf.make_ndarray(graph.nodes[name].attr["value"].tensor)
        if not np.any(value):  # zeros (an untrained bias) tie nothing: every layer has them
            return None
        return hashlib.sha1(role.encode() + str(value.shape).encode() + value.tobytes()).hexdigest()

    owner: dict[str, int] = {}
    parent = list(range(len(found)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for k, group in enumerate(found):
        for role, names in (("out", group.made_by), ("bias", group.biases), ("in", group.read_by)):
            for name in names:
                found_key = key(name, role)
                if found_key is None:
                    continue
                first = owner.setdefault(found_key, k)
                parent[root(k)] = root(first)
    merged: dict[int, ScalingGroup] = {}
    for k, group in enumerate(found):
        merged.setdefault(root(k), ScalingGroup()).merge(group)
    return [group for group in merged.values() if group.scalable and group.made_by]


def equalizing_scales(
    groups: list[ScalingGroup],
    ranges: dict[str, tuple[np.ndarray, np.ndarray]],
    floor: float = DEFAULT_FLOOR,
) -> list[tuple[ScalingGroup, np.ndarray]]:
    """Each group's channel scales, from its tensors' per-channel `(min, max)` in `ranges`.

    A tensor's int8 step is its widest channel's extent over 255; a channel
    narrower than that gets fewer steps. The scales `s` (channel `c` divided
    by `s_c`) minimize the sum, over every channel of every tensor of the
    group, of the squared step relative to the channel's own extent: one
    scale vector serves tensors whose channels differ (a residual chain's
    sums and the branches added to them). A scale stays between `floor` and
    1: a dead channel is not lifted without bound (the next kernel's input
    channel shrinks by as much, and its weights lose int8 steps).
    """
    scaled = []
    for group in groups:
        shares = []
        for name in sorted(group.tensors & set(ranges)):
            low, high = ranges[name]
            extent = np.maximum(np.abs(low), np.abs(high)).astype(np.float64)
            if extent.max() > 0:
                shares.append(extent / extent.max())
        if shares:
            scaled.append((group, _balanced(np.array(shares), floor)))
    return scaled


def _balanced(shares: np.ndarray, floor: float, sharpness: float = 30.0) -> np.ndarray:
    """The scales of `equalizing_scales` for `shares[t, c]`: channel `c`'s extent in tensor `t`.

    After division by `s`, tensor `t`'s step is `max_c shares[t, c] / s_c`,
    and channel `c`'s step relative to its own extent is that over
    `shares[t, c] / s_c`. The sum of their squares is minimized in `log s`
    (L-BFGS), the max smoothed by a log-sum-exp.
    """
    from scipy.optimize import minimize

    logs = np.log(np.maximum(shares, floor))

    def cost(u):
        a = logs - u
        top = a.max(axis=1, keepdims=True)
        weights = np.exp(sharpness * (a - top))
        total = weights.sum(axis=1, keepdims=True)
        relative = np.exp(2 * (top + np.log(total) / sharpness - a))
        softmax = weights / total
        gradient = 2 * relative - 2 * softmax * relative.sum(axis=1, keepdims=True)
        return relative.sum() / relative.size, gradient.sum(axis=0) / relative.size

    found = minimize(cost, np.zeros(logs.shape[1]), jac=True, method="L-BFGS-B")
    return np.exp(np.maximum(found.x - found.x.max(), np.log(floor)))


def with_channel_scales(frozen: FrozenGraph, scales) -> FrozenGraph:
    """A copy of `frozen` with each group's channels divided by its scales (`equalizing_scales`)."""
    import tensorflow as tf

    edits: dict[str, list[tuple[str, np.ndarray]]] = {}
    for group, scale in scales:
        for name in group.made_by | group.biases:
            edits.setdefault(name, []).append(("divide", scale))
        for name in group.read_by:
            edits.setdefault(name, []).append(("multiply", scale))
    graph_def = copy_graph_def(frozen.graph_def)
    for node in graph_def.node:
        if node.name not in edits:
            continue
        value = tf.make_ndarray(node.attr["value"].tensor).astype(np.float64)
        for how, scale in edits[node.name]:
            if how == "divide":
                value = value / scale  # the last axis: a bias, or a kernel's output channels
            else:
                value = value * scale[:, None]  # a kernel's input channels (HWIO)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.astype(np.float32)))
    return FrozenGraph(graph_def, frozen.input, frozen.outputs, frozen.height, frozen.width)


def equalized_ranges(
    frozen: FrozenGraph,
    samples,
    precision: str = "auto",
    floor: float = DEFAULT_FLOOR,
    progress: bool = False,
):
    """`frozen` equalized on `samples`, and the int8 ranges of the equalized graph, in one pass.

    The ranges come from the same run as the scales: a group's tensors are
    recorded per channel (`record_ranges(channels=...)`), and channel `c`
    of the equalized graph spans the recorded extremes over `s_c`.

    Returns:
        `(graph, values, recorded, scales)`: the equalized graph, its
        ranges (tensor name to `(min, max)`), the `Ranges` of the run (its
        time and precision) and the scales (`with_channel_scales` applies
        them to the graph frozen at another size: the names match).
    """
    from tf_deraindrop.export.int8.ranges import quantization_points, record_ranges

    groups = scaling_groups(frozen)
    inside = set().union(*(group.tensors for group in groups)) if groups else set()
    points = quantization_points(frozen)
    recorded = record_ranges(
        frozen, samples, precision, points, progress, [name for name in points if name in inside]
    )
    scales = equalizing_scales(groups, recorded.channels, floor)
    values = dict(recorded.values)
    for group, scale in scales:
        for name in group.tensors & recorded.channels.keys():
            low, high = recorded.channels[name]
            low, high = float(np.min(low / scale)), float(np.max(high / scale))
            values[name] = (min(low, 0.0), max(high, 0.0))
    return with_channel_scales(frozen, scales), values, recorded, scales
