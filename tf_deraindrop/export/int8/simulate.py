"""int8 simulated in TensorFlow: how far a fixed-range graph's output is from float.

The graph with its ranges as fake-quant nodes (`tf_deraindrop.export.int8.calibrate`), its
convolution kernels rounded per output channel as the converter stores
them, and the sigmoids' and tanhs' outputs at their fixed int8 steps
(`tf_deraindrop.export.int8.qat_graph`): what the int8 model computes, to within the
converter's own rounding of biases and rescaling (about 0.5 dB more
pessimistic than the converted model on a random-weight generator at
32 x 48, the same for either graph compared).
`tf_deraindrop.export.int8.calibrate.calibrated` uses it to choose between two ways to the
same ranges.

Example:
    >>> candidates = [(frozen, ranges), (equalized, its_ranges)]  # doctest: +SKIP
    >>> errors = simulated_errors(frozen, candidates, samples)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tf_deraindrop.export.frozen import FrozenGraph


def _int8_graph(frozen: FrozenGraph, ranges: dict[str, tuple[float, float]]):
    """`(graph_def, output name, rounded kernels by tensor name)` of the int8 simulation."""
    import tensorflow as tf

    from tf_deraindrop.export.int8.fake_quant import insert_fake_quant
    from tf_deraindrop.export.int8.qat_graph import (
        fake_quant_kernel,
        fixed_output_fake_quant,
        weight_groups,
    )

    graph_def, outputs = insert_fake_quant(frozen, ranges)
    kernels = {}
    for kind, value, names in weight_groups(frozen):
        if kind == "kernel":
            rounded = fake_quant_kernel(tf.constant(value)).numpy()
            kernels.update({name + ":0": rounded for name in names})
    return fixed_output_fake_quant(graph_def), outputs[0], kernels


def simulated_errors(
    reference: FrozenGraph,
    candidates: Sequence[tuple[FrozenGraph, dict[str, tuple[float, float]]]],
    samples: Sequence[np.ndarray],
) -> list[float]:
    """Mean squared error of each candidate's int8-simulated output against `reference`'s float one.

    Outputs are clipped to [0, 1], as they are used. One traced function
    runs the float graph and every candidate on each sample.

    Args:
        reference: the float graph.
        candidates: `(graph, ranges)` pairs: graphs computing what
            `reference` computes in float, and their tensors' int8 ranges.
        samples: float32 `(H, W, 3)` images at the graphs' size.
    """
    import tensorflow as tf

    simulations = [_int8_graph(frozen, ranges) for frozen, ranges in candidates]
    spec = tf.TensorSpec((1, reference.height, reference.width, 3), tf.float32)

    @tf.function(input_signature=[spec])
    def run(image):
        (target,) = tf.graph_util.import_graph_def(
            reference.graph_def,
            input_map={reference.input: image},
            return_elements=[reference.outputs[0]],
            name="float",
        )
        target = tf.clip_by_value(target, 0.0, 1.0)
        errors = []
        for k, ((frozen, _), (graph_def, output, kernels)) in enumerate(
            zip(candidates, simulations)
        ):
            input_map = {frozen.input: image}
            input_map.update({name: tf.constant(value) for name, value in kernels.items()})
            (derained,) = tf.graph_util.import_graph_def(
                graph_def, input_map=input_map, return_elements=[output], name=f"int8_{k}"
            )
            errors.append(tf.reduce_mean(tf.square(tf.clip_by_value(derained, 0.0, 1.0) - target)))
        return tf.stack(errors)

    found = [run(np.asarray(sample, np.float32)[None]).numpy() for sample in samples]
    return [float(error) for error in np.mean(found, axis=0)]
