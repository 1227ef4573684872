"""The frozen export graph's edits for quantization-aware fine-tuning (`export.int8.qat`).

The weights to train (`weight_groups`: the constants of the convolutions,
tied by content), what int8 does to them (`fake_quant_kernel`) and to the
sigmoid and tanh outputs (`fixed_output_fake_quant`), the trained values
written back (`with_weights`) and carried into another export graph of the
same model (`with_trained_weights`: the `stream` signature).

Example:
    >>> groups = weight_groups(frozen)  # doctest: +SKIP
    >>> trained = with_weights(frozen, groups, [value for _, value, _ in groups])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib

import numpy as np

from tf_deraindrop.export.frozen import FrozenGraph, consumers, copy_graph_def


def fixed_output_fake_quant(graph_def):
    """Fake quantization of every sigmoid's and tanh's output to its fixed int8 steps.

    TFLite's int8 LOGISTIC outputs multiples of 1/256 in [0, 255/256] and
    TANH multiples of 1/128 in [-1, 127/128], whatever the calibration:
    training sees the same steps.
    """
    import tensorflow as tf

    fixed = {"Sigmoid": (0.0, 255.0 / 256.0), "Tanh": (-1.0, 127.0 / 128.0)}
    copy = copy_graph_def(graph_def)
    renamed, added = {}, []
    for node in copy.node:
        if node.op in fixed:
            fake = tf.compat.v1.NodeDef(name=f"{node.name}/steps", op="FakeQuantWithMinMaxArgs")
            fake.input.append(node.name)
            fake.attr["min"].f, fake.attr["max"].f = fixed[node.op]
            fake.attr["num_bits"].i = 8
            renamed[node.name] = fake.name
            added.append(fake)
    for node in copy.node:
        for k, name in enumerate(node.input):
            base = name[:-2] if name.endswith(":0") else name
            if base in renamed:
                node.input[k] = renamed[base]
    copy.node.extend(added)
    return copy


def _weights(frozen: FrozenGraph):
    """`(const name, kind, value)` of each constant kernel and bias of a convolution."""
    import tensorflow as tf

    from tf_deraindrop.export.int8.bias_correction import bias_constant

    nodes = {node.name: node for node in frozen.graph_def.node}
    readers = consumers(frozen.graph_def)
    uses: dict[str, str] = {}
    for node in frozen.graph_def.node:
        if node.op in ("Conv2D", "DepthwiseConv2dNative", "BiasAdd") and len(node.input) > 1:
            source = node.input[1].split(":")[0]
            if nodes.get(source) is not None and nodes[source].op == "Const":
                uses[source] = "bias" if node.op == "BiasAdd" else "kernel"
            elif node.op == "BiasAdd" and (moved := bias_constant(nodes, readers, source)):
                uses[moved] = "bias"  # through reshapes: a LiteGenerator's biases
    for name, kind in uses.items():
        value = tf.make_ndarray(nodes[name].attr["value"].tensor)
        if value.dtype == np.float32:
            yield name, kind, value


def weight_groups(frozen: FrozenGraph) -> list[tuple[str, np.ndarray, list[str]]]:
    """Convolution kernels and biases: `(kind, value, const node names)`, equal values tied.

    The export graph makes a constant for each use of a weight, so the
    recurrent steps' copies of one kernel are tied again by their content.
    Kernels of zeros (the `A_0` convolution) stay constant.
    """
    groups: dict[str, tuple[str, np.ndarray, list[str]]] = {}
    for name, kind, value in _weights(frozen):
        if np.any(value):
            key = hashlib.sha1(kind.encode() + str(value.shape).encode() + value.tobytes())
            groups.setdefault(key.hexdigest(), (kind, value, []))[2].append(name)
    return list(groups.values())


def with_trained_weights(
    target: FrozenGraph, original: FrozenGraph, trained: FrozenGraph, scales=()
) -> FrozenGraph:
    """`target` with the weights fine-tuning trained in another graph of the same model.

    `original` is the graph fine-tuning started from, as frozen from the
    model, and `trained` the same graph after it, channel-equalized by
    `scales` (`tf_deraindrop.export.int8.equalization`). The weights go over by constant name:
    a model's export graphs make one constant per variable, in the order of
    its variables, so the `stream` graph of a `LiteGenerator` names its
    weights as its per-frame graph does. Equalization is undone on the way
    (the float graph is the same either way).

    Raises:
        RuntimeError: a weight of `target` has no constant of the same name
            and value in `original`.
    """
    import tensorflow as tf

    from tf_deraindrop.export.int8.equalization import with_channel_scales

    plain = with_channel_scales(trained, [(group, 1.0 / scale) for group, scale in scales])
    started = {name: value for name, _, value in _weights(original)}
    found = {name: value for name, _, value in _weights(plain)}
    wanted = {name: value for name, _, value in _weights(target)}
    for name, value in wanted.items():
        if name not in started or not np.array_equal(started[name], value):
            raise RuntimeError(f"weight {name} differs between the export graphs")
    graph_def = copy_graph_def(target.graph_def)
    for node in graph_def.node:
        if node.name in wanted:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(found[node.name]))
    return FrozenGraph(graph_def, target.input, target.outputs, target.height, target.width)


def fake_quant_kernel(kernel):
    """Per-output-channel symmetric int8 (-127..127), as the converter quantizes weights."""
    import tensorflow as tf

    axes = list(range(len(kernel.shape) - 1))
    bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel), axis=axes), 1e-8))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel, -bound, bound, num_bits=8, narrow_range=True
    )


def with_weights(frozen: FrozenGraph, groups, values) -> FrozenGraph:
    """A copy of `frozen` with each group's constants set to its trained value."""
    import tensorflow as tf

    graph_def = copy_graph_def(frozen.graph_def)
    by_name = {}
    for (_, _, names), value in zip(groups, values):
        by_name.update({name: value for name in names})
    found = 0
    for node in graph_def.node:
        if node.name in by_name:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(by_name[node.name]))
            found += 1
    if found != len(by_name):
        raise RuntimeError("the export graph differs between the export and training sizes")
    return FrozenGraph(graph_def, frozen.input, frozen.outputs, frozen.height, frozen.width)
