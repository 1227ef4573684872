"""int8 ranges cut where the values beyond them cannot change the int8 result.

Min/max calibration (`tf_deraindrop.export.int8.ranges.record_ranges`) spends a tensor's 256
steps on all it spans. Where the int8 graph cannot tell values past some
bound apart anyway (a saturated sigmoid or tanh, an image clipped to
[0, 1] by every consumer, an addend whose sum goes through a ReLU), the
range stops at that bound and the step shrinks, with the same int8 output
for every value in between.

Example:
    >>> values = saturated_ranges(frozen, recorded.values)  # doctest: +SKIP
    >>> values = relu_sum_ranges(frozen, values)  # doctest: +SKIP
    >>> values = clip_output_range(frozen, values)  # doctest: +SKIP
"""

from __future__ import annotations

from tf_deraindrop.export.frozen import FrozenGraph, consumers, tensor_name

#: Inputs beyond which an int8 LOGISTIC or TANH output no longer changes.
#: Their outputs have fixed scales (1/256 and 1/128), so sigmoid saturates
#: at its top step (255/256) from ln(255) = 5.5 on, tanh at 127/128 from
#: atanh(127/128) = 2.8 on (and alike below): a range past +-8 and +-4 only
#: coarsens the step.
SATURATION = {"Sigmoid": 8.0, "Tanh": 4.0}


def saturated_ranges(
    frozen: FrozenGraph, ranges: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """`ranges` with each tensor read only by sigmoids (tanhs) clipped to +-8 (+-4).

    A gate's pre-activation in an untrained generator spans tens of units;
    min/max calibration (the converter's) gives it a step of 0.2 where
    everything past +-8 reaches the sigmoid as the same int8 value anyway.
    Where that pre-activation is a sum `a + b` (an LSTM gate after the first
    step: input part plus hidden part) and `a` has no other reader, `a` is
    clipped where `b` cannot bring the sum back: past `8 - min(b)` the sum
    is past 8 whatever `b` is, so the int8 sum is the same (the hidden
    part spans about +-1, so the input part's step shrinks 3 to 6 times).

    Example:
        >>> clipped = saturated_ranges(frozen, recorded.values)  # doctest: +SKIP
    """
    readers = consumers(frozen.graph_def)
    nodes = {node.name: node for node in frozen.graph_def.node}
    clipped = dict(ranges)
    for name, (low, high) in ranges.items():
        ops = {node.op for node in readers.get(name, [])}
        if len(ops) == 1 and next(iter(ops)) in SATURATION:
            bound = SATURATION[next(iter(ops))]
            clipped[name] = (max(low, -bound), min(high, bound))
            clipped.update(_addend_ranges(nodes[name.split(":")[0]], bound, ranges, readers))
    return clipped


def _addend_ranges(node, bound: float, ranges, readers) -> dict[str, tuple[float, float]]:
    """The addends of a sum saturated at `+-bound`, each clipped where the other cannot matter."""
    addends = [tensor_name(name) for name in node.input if not name.startswith("^")]
    if node.op not in ("AddV2", "Add") or len(addends) != 2:
        return {}
    if not all(name in ranges and len(readers.get(name, [])) == 1 for name in addends):
        return {}
    found = {}
    for name, other in (addends, addends[::-1]):
        (low, high), (other_low, other_high) = ranges[name], ranges[other]
        found[name] = (max(low, -bound - other_high), min(high, bound - other_low))
    return found


def clip_output_range(
    frozen: FrozenGraph, ranges: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """`ranges` with the derained image's (`frozen.outputs[0]`) cut to the image range [0, 1].

    Every consumer of the output clips it to [0, 1] (predict, evaluate,
    video, `LiteDerainer.derain`), so the int8 output's step is spent on
    that range only: 1/255, one 8-bit pixel step, whatever an untrained
    generator's output spans (about -2 to 2 for random weights). The int8
    output then saturates at 0 and 1 with no op added. The tensor is the
    output's own or the one it copies (through Identity); left as it is
    when that tensor has other readers.
    """
    nodes = {node.name: node for node in frozen.graph_def.node}
    readers = consumers(frozen.graph_def)
    name = frozen.outputs[0]
    while name not in ranges and nodes[name.split(":")[0]].op == "Identity":
        name = tensor_name(nodes[name.split(":")[0]].input[0])
    if name not in ranges or len(readers.get(name, [])) > 1:
        return dict(ranges)
    low, high = ranges[name]
    return {**ranges, name: (max(low, 0.0), min(high, 1.0))}


def relu_sum_ranges(
    frozen: FrozenGraph, ranges: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """`ranges` with each addend of a ReLU'd sum cut below where the sum is 0 anyway.

    In `relu(a + b)`, every `a` below `-max(b)` gives 0, so `a`'s range can
    start at `-max(b)` with the same int8 output. Where `a` is read by
    several such sums (the image's part of the first convolution, shared by
    the four recurrent steps, each adding its own attention part), the
    bound is the lowest of them; an addend with any other reader keeps its
    range. On a random-weight generator this halves the step of the image
    parts of both halves' first convolutions (-2.5 to 2.4 becomes -1.0 to
    2.4 in the attentive-recurrent network, -4.0 to 2.6 becomes -0.9 to 2.6
    in the autoencoder).

    Example:
        >>> clipped = relu_sum_ranges(frozen, recorded.values)  # doctest: +SKIP
    """
    readers = consumers(frozen.graph_def)
    bounds: dict[str, float] = {}
    blocked: set[str] = set()
    for node in frozen.graph_def.node:
        addends = [tensor_name(name) for name in node.input if not name.startswith("^")]
        for name in addends:
            if name not in ranges:
                continue
            other = _other_addend(node, name, addends, readers)
            if other is None or other not in ranges:
                blocked.add(name)
            else:
                bounds[name] = min(bounds.get(name, 0.0), -max(ranges[other][1], 0.0))
    clipped = dict(ranges)
    for name, bound in bounds.items():
        if name not in blocked:
            low, high = ranges[name]
            clipped[name] = (max(low, bound), high)
    return clipped


def _other_addend(node, name: str, addends: list[str], readers) -> str | None:
    """The other addend when `node` is `name + other` read only by one ReLU; else None."""
    if node.op not in ("AddV2", "Add") or len(addends) != 2 or addends[0] == addends[1]:
        return None
    users = readers.get(node.name + ":0", [])
    if len(users) != 1 or users[0].op != "Relu":
        return None
    return addends[1] if addends[0] == name else addends[0]
