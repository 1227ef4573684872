"""Fixed int8 ranges written into the graph as `FakeQuantWithMinMaxVars` nodes.

The converter reads a graph with fake-quant nodes as a quantization-aware
trained model: it converts it without a representative dataset, taking each
range as fixed, and quantizes the weights as post-training int8 does (per
channel).

Example:
    >>> graph = FakeQuantGraph(frozen, ranges.values)  # doctest: +SKIP
    >>> write_saved_model(graph, "saved_model", 480, 720)  # doctest: +SKIP
    >>> model = convert("saved_model", "int8")  # no representative dataset  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from tf_deraindrop.export.frozen import FrozenGraph, copy_graph_def, tensor_name


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
