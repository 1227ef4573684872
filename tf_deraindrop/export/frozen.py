"""The export graph frozen at a static size: a `GraphDef` with its weights as constants.

`tf_deraindrop.export.int8.calibrate` measures int8 ranges on it and inserts fake-quant nodes;
`tf_deraindrop.export.int8.qat` fine-tunes its weights. Node names depend only on the graph's
code, not on the size: graphs frozen at two sizes share them (ranges and
weights carry over by name).

Example:
    >>> frozen = freeze(generator, 480, 720)  # doctest: +SKIP
    >>> readers = consumers(frozen.graph_def)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class FrozenGraph:
    """An export graph traced at a static size: a `GraphDef` with its weights as constants.

    Attributes:
        graph_def: the graph.
        input: the image placeholder's tensor name (`"image:0"`).
        outputs: the tensor names of `(derained, attention)`.
        height, width: the static input size.
    """

    graph_def: object
    input: str
    outputs: tuple[str, str]
    height: int
    width: int


def deploy_callable(generator) -> Callable:
    """The generator's export graph, `image -> (derained, attention)` (as `write_saved_model`)."""
    from tf_deraindrop.export.graph import DeployGraph

    deploy = getattr(generator, "deploy_graph", None)
    return deploy() if deploy is not None else DeployGraph(generator)


def freeze(generator, height: int, width: int, batch: int = 1) -> FrozenGraph:
    """Traces the generator's export graph at `(batch, height, width, 3)` into a `FrozenGraph`."""
    import tensorflow as tf

    graph = deploy_callable(generator)
    spec = tf.TensorSpec((batch, height, width, 3), tf.float32, name="image")
    concrete = tf.function(lambda image: tuple(graph(image))).get_concrete_function(spec)
    if concrete.captured_inputs:
        raise ValueError("the export graph captures variables; expected constant weights")
    (image,) = concrete.graph.inputs
    derained, attention = concrete.graph.outputs
    return FrozenGraph(
        concrete.graph.as_graph_def(), image.name, (derained.name, attention.name), height, width
    )


def copy_graph_def(graph_def):
    """A copy of `graph_def` to edit."""
    import tensorflow as tf

    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph_def)
    return copy


def consumers(graph_def) -> dict[str, list]:
    """Tensor name (`"node:k"`) to the nodes that read it (control inputs aside)."""
    found: dict[str, list] = {}
    for node in graph_def.node:
        for name in node.input:
            if not name.startswith("^"):
                found.setdefault(tensor_name(name), []).append(node)
    return found


def tensor_name(name: str) -> str:
    """`"node"` or `"node:k"` as `"node:k"`."""
    return name if ":" in name else name + ":0"
