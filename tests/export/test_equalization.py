"""Channel equalization (`export.int8.equalization`) on a random-weight generator at 32 x 48.

The equalized graph computes what the original computes, its channels'
extents are closer together, the ranges measured in the same pass are
those of the equalized graph, tied weights stay tied, and the int8 export
gets closer to float.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.export import int8_tflite
from tf_deraindrop.export.int8 import calibrate, fake_quant
from tf_deraindrop.export.int8 import ranges as int8_ranges
from tf_deraindrop.export.int8.equalization import DEFAULT_FLOOR, equalized_ranges, scaling_groups
from tf_deraindrop.export.int8.qat_graph import weight_groups
from tf_deraindrop.metrics import psnr

H, W = 32, 48


@pytest.fixture(scope="module")
def equalized(frozen, samples):
    return equalized_ranges(frozen, samples, "float32")


def _run(graph, image) -> list[np.ndarray]:
    import tensorflow as tf

    @tf.function
    def run(x):
        return tf.graph_util.import_graph_def(
            graph.graph_def,
            input_map={graph.input: x},
            return_elements=list(graph.outputs),
            name="run",
        )

    return [np.asarray(t) for t in run(tf.constant(image[None]))]


def _shares(low, high) -> np.ndarray:
    extent = np.maximum(np.abs(low), np.abs(high))
    return extent / extent.max()


def test_the_float_graph_computes_the_same(frozen, equalized, held_out):
    graph, _, _, scales = equalized
    assert scales
    before, after = _run(frozen, held_out), _run(graph, held_out)
    for a, b in zip(before, after):
        assert np.max(np.abs(a - b)) <= 1e-4 * max(1.0, np.max(np.abs(a)))
    for _, scale in scales:
        assert np.all(scale >= DEFAULT_FLOOR - 1e-9) and np.all(scale <= 1 + 1e-9)
        assert np.max(scale) == pytest.approx(1.0)
    assert any(np.min(scale) < 0.9 for _, scale in scales)  # something was scaled


def test_channels_closer_and_ranges_of_the_equalized_graph(equalized, samples):
    graph, values, recorded, _ = equalized
    assert recorded.channels
    again = int8_ranges.record_ranges(graph, samples, "float32", channels=list(recorded.channels))
    before = [np.median(_shares(*recorded.channels[name])) for name in recorded.channels]
    after = [np.median(_shares(*again.channels[name])) for name in recorded.channels]
    assert np.median(after) > np.median(before) + 0.1, (np.median(before), np.median(after))
    # The one pass's ranges are those measured on the equalized graph.
    assert set(values) == set(again.values)
    for name, (low, high) in again.values.items():
        width = max(high - low, 1e-6)
        assert abs(values[name][0] - low) <= 1e-3 * width, name
        assert abs(values[name][1] - high) <= 1e-3 * width, name


def test_groups_stop_at_ops_that_do_not_commute(frozen):
    from tf_deraindrop.export.frozen import consumers

    nodes = {node.name: node for node in frozen.graph_def.node}
    readers = consumers(frozen.graph_def)
    groups = scaling_groups(frozen)
    assert groups
    linear = {"Relu", "AddV2", "BiasAdd", "Conv2D", "Pad", "SpaceToBatchND", "BatchToSpaceND"}
    for group in groups:
        assert not group.tensors & set(frozen.outputs)
        for name in group.tensors:
            assert nodes[name.split(":")[0]].op in linear, name
            for reader in readers.get(name, []):
                assert reader.op in linear, (name, reader.op)


def test_tied_weights_stay_tied(frozen, equalized):
    graph = equalized[0]
    assert len(weight_groups(graph)) == len(weight_groups(frozen))


def test_int8_closer_to_float_and_as_simulated(generator, samples, held_out, tmp_path):
    from tf_deraindrop.export.int8.simulate import simulated_errors
    from tf_deraindrop.inference.tflite import LiteDerainer

    output = generator(held_out[None], training=False)["outputs"][-1]
    expected = np.clip(np.asarray(output)[0], 0, 1)
    scores, simulated = {}, {}
    for equalize in (False, True):
        graph, _ = calibrate.fixed_range_graph(
            generator, H, W, samples, precision="float32", equalize=equalize
        )
        assert bool(graph.scales) == equalize
        path = int8_tflite(graph, tmp_path, f"equalize_{equalize}.tflite", H, W)
        scores[equalize] = psnr(np.clip(LiteDerainer(str(path)).run_tile(held_out), 0, 1), expected)
        (error,) = simulated_errors(graph.frozen, [(graph.frozen, _ranges(graph))], [held_out])
        simulated[equalize] = 10 * np.log10(1 / error)
    assert scores[True] > scores[False] + 0.5, scores
    # The simulation in TensorFlow predicts the converted model's error, and
    # the gap between them is the CPU's: the ranges and the simulation run on
    # TensorFlow's kernels (oneDNN or not) and the converted model on
    # XNNPACK's int8 ones, which XNNPACK picks by CPU (AVX2, AVX-512, VNNI),
    # each rounding its own way. The converted model came 0.8 to 1.2 dB
    # closer to float than simulated on an AVX-512 VNNI EPYC, 1.8 to 2.1 dB
    # with TF_ENABLE_ONEDNN_OPTS=0 there, 1.6 dB on an AVX2-only EPYC: hence
    # the 3 dB bound. What the export relies on holds everywhere: the
    # simulation ranks the two graphs as the converted models rank them
    # (`calibrate.calibrated` keeps equalization on that ranking), with the
    # same gap for both to 0.35 dB (1 dB allowed).
    gaps = {k: scores[k] - simulated[k] for k in scores}
    assert simulated[True] > simulated[False], (simulated, scores)
    assert abs(gaps[True] - gaps[False]) < 1.0, (simulated, scores)
    assert all(abs(gap) < 3.0 for gap in gaps.values()), (simulated, scores)


def _ranges(graph) -> dict[str, tuple[float, float]]:
    """The ranges held by a `FakeQuantGraph`'s constants."""
    import tensorflow as tf

    nodes = {node.name: node for node in graph.graph_def.node}
    found = {}
    for name in int8_ranges.quantization_points(graph.frozen):
        low, high = fake_quant.range_nodes(name)
        if low in nodes:
            found[name] = tuple(
                float(tf.make_ndarray(nodes[n].attr["value"].tensor)) for n in (low, high)
            )
    return found


def test_calibrated_keeps_equalization_only_where_clearly_closer(frozen, samples):
    from tf_deraindrop.export.int8.simulate import simulated_errors

    chosen = calibrate.calibrated(frozen, samples, "float32")
    candidates = [calibrate.calibrated(frozen, samples, "float32", e)[:2] for e in (False, True)]
    plain, equalized = simulated_errors(frozen, candidates, samples[: calibrate.CHOICE_SAMPLES])
    kept = bool(chosen[3])
    assert kept == (equalized <= calibrate.EQUALIZED_GAIN * plain), (plain, equalized)
    assert chosen[1] == candidates[kept][1]
