"""int8 simulated in TensorFlow: how far a fixed-range graph's output is from float.

The graph with its ranges as fake-quant nodes (`export.calibrate`), its
convolution kernels rounded per output channel as the converter stores
them, and the sigmoids' and tanhs' outputs at their fixed int8 steps
(`export.qat_graph`): what the int8 model computes, to within the
converter's own rounding of biases and rescaling (about 0.5 dB more
pessimistic than the converted model on a random-weight generator at
32 x 48, the same for either graph compared).
`export.calibrate.calibrated` uses it to choose between two ways to the
same ranges.

Example:
    >>> reference = float_outputs(frozen, samples)  # doctest: +SKIP
    >>> error = simulated_error(frozen, ranges, samples, reference)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from export.frozen import FrozenGraph


def _stacked(samples: Sequence[np.ndarray]) -> np.ndarray:
    """`samples` as one `(n, 1, H, W, 3)` float32 array: each a batch of one, as the graph takes."""
    return np.stack([np.asarray(sample, np.float32)[None] for sample in samples])


def float_outputs(frozen: FrozenGraph, samples: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The float graph's derained output for each sample, clipped to [0, 1]."""
    import tensorflow as tf

    # One function for all samples: traced once, not once per sample.
    @tf.function
    def run(images):
        found = []
        for k in range(images.shape[0]):
            (derained,) = tf.graph_util.import_graph_def(
                frozen.graph_def,
                input_map={frozen.input: images[k]},
                return_elements=[frozen.outputs[0]],
                name=f"float{k}",
            )
            found.append(tf.clip_by_value(derained, 0.0, 1.0))
        return found

    return [t.numpy() for t in run(_stacked(samples))]


def simulated_error(
    frozen: FrozenGraph,
    ranges: dict[str, tuple[float, float]],
    samples: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
) -> float:
    """Mean squared error of the int8-simulated output against `references` (`float_outputs`).

    Args:
        frozen: the graph as it will be converted.
        ranges: its tensors' int8 ranges.
        samples: float32 `(H, W, 3)` images at the graph's size.
        references: the float output for each sample, clipped to [0, 1].
    """
    import tensorflow as tf

    from export.calibrate import insert_fake_quant
    from export.qat_graph import fake_quant_kernel, fixed_output_fake_quant, weight_groups

    graph_def, outputs = insert_fake_quant(frozen, ranges)
    graph_def = fixed_output_fake_quant(graph_def)
    kernels = {}
    for kind, value, names in weight_groups(frozen):
        if kind == "kernel":
            rounded = fake_quant_kernel(tf.constant(value)).numpy()
            kernels.update({name + ":0": rounded for name in names})

    @tf.function
    def run(images):
        found = []
        for k in range(images.shape[0]):
            input_map = {frozen.input: images[k]}
            input_map.update({name: tf.constant(value) for name, value in kernels.items()})
            (derained,) = tf.graph_util.import_graph_def(
                graph_def, input_map=input_map, return_elements=[outputs[0]], name=f"int8_{k}"
            )
            found.append(tf.clip_by_value(derained, 0.0, 1.0))
        return found

    simulated = run(_stacked(samples))
    errors = [np.mean((t.numpy() - reference) ** 2) for t, reference in zip(simulated, references)]
    return float(np.mean(errors))
