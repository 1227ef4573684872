"""The frozen export graph's edits for quantization-aware fine-tuning (`export.int8.qat`).

The weights to train (`weight_groups`: the constants of the convolutions,
tied by content), what int8 does to them (`fake_quant_kernel`) and to the
sigmoid and tanh outputs (`fixed_output_fake_quant`), the dilated
convolutions computed without dilation (`without_dilation`: the gradient
kernels of TensorFlow's CPU build lack dilation without oneDNN), the trained values
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


def _same_pads(size: int, kernel: int, rate: int) -> tuple[int, int]:
    """`(before, after)` of SAME padding for a kernel dilated by `rate`, stride 1."""
    total = (kernel - 1) * rate
    return total // 2, total - total // 2


def _atrous_nodes(node, input_shape, kernel_shape):
    """SpaceToBatchND -> the convolution undilated and VALID -> BatchToSpaceND, or None.

    Atrous convolution as `tf.nn.with_space_to_batch` computes it: the input
    (padded as the dilated convolution pads it, plus up to `rate - 1` rows
    and columns to a multiple of the rate) split into `rate * rate`
    subsampled images, each convolved with the dense kernel, then
    interleaved back and the extra rows and columns cropped. The last node
    keeps the convolution's name, so its consumers and tensor names stay.
    """
    import tensorflow as tf

    rates = list(node.attr["dilations"].list.i)
    strides = list(node.attr["strides"].list.i)
    padding = node.attr["padding"].s.decode()
    if (
        node.attr["data_format"].s.decode() not in ("", "NHWC")
        or rates[0] != 1
        or rates[3] != 1
        or rates[1:3] == [1, 1]
        or any(s != 1 for s in strides)
        or padding not in ("SAME", "VALID")
        or None in input_shape[1:3]
    ):
        return None
    pads, crops = [], []
    for size, kernel, rate in zip(input_shape[1:3], kernel_shape[:2], rates[1:3]):
        before, after = _same_pads(size, kernel, rate) if padding == "SAME" else (0, 0)
        extra = -(size + before + after) % rate
        pads.append([before, after + extra])
        crops.append([0, extra])

    def const(name, value):
        tensor = tf.make_tensor_proto(np.asarray(value, np.int32))
        out = tf.compat.v1.NodeDef(name=name, op="Const")
        out.attr["dtype"].type = tensor.dtype
        out.attr["value"].tensor.CopyFrom(tensor)
        return out

    name = node.name
    block = const(f"{name}/atrous/block", rates[1:3])
    paddings = const(f"{name}/atrous/pads", pads)
    cropping = const(f"{name}/atrous/crops", crops)
    to_batch = tf.compat.v1.NodeDef(name=f"{name}/atrous/to_batch", op="SpaceToBatchND")
    to_batch.input.extend([node.input[0], block.name, paddings.name])
    to_batch.attr["Tpaddings"].type = block.attr["dtype"].type
    conv = tf.compat.v1.NodeDef()
    conv.CopyFrom(node)
    conv.name = f"{name}/atrous/conv"
    conv.input[0] = to_batch.name
    conv.attr["dilations"].list.i[:] = [1, 1, 1, 1]
    conv.attr["padding"].s = b"VALID"
    back = tf.compat.v1.NodeDef(name=name, op="BatchToSpaceND")
    back.input.extend([conv.name, block.name, cropping.name])
    back.attr["Tcrops"].type = block.attr["dtype"].type
    for op in (to_batch, back):
        op.attr["Tblock_shape"].type = block.attr["dtype"].type
        op.attr["T"].CopyFrom(node.attr["T"])
    return [block, paddings, cropping, to_batch, conv, back]


def without_dilation(graph_def):
    """A copy of a fixed-size graph with each dilated convolution computed undilated.

    The same function (`_atrous_nodes`), but differentiable with the stock
    CPU kernels: TensorFlow's `Conv2DBackpropInput` rejects dilation rates
    over 1 on CPUs where oneDNN is off (it is off by default on CPUs
    without AVX-512, such as AVX2-only AMD EPYCs). Convolutions it cannot
    rewrite (strided, explicit padding, unknown sizes) stay as they are.
    """
    import tensorflow as tf

    copy = copy_graph_def(graph_def)
    dilated = [
        node
        for node in copy.node
        if node.op in ("Conv2D", "DepthwiseConv2dNative")
        and any(rate != 1 for rate in node.attr["dilations"].list.i)
    ]
    if not dilated:
        return copy
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(copy, name="")
    rewritten = {}
    for node in dilated:
        inputs = graph.get_operation_by_name(node.name).inputs[:2]
        if any(tensor.shape.rank != 4 for tensor in inputs):
            continue
        nodes = _atrous_nodes(node, *(tensor.shape.as_list() for tensor in inputs))
        if nodes:
            rewritten[node.name] = nodes
    kept = [node for node in copy.node if node.name not in rewritten]
    del copy.node[:]
    copy.node.extend(kept)
    for nodes in rewritten.values():
        copy.node.extend(nodes)
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
