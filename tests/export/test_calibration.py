"""int8 calibration in TensorFlow (`int8.calibrate`) against the TFLite converter's calibrator.

At 32 x 48, on a generator with He-initialised random weights: the ranges
measured in TensorFlow equal the ones the converter's calibrator logs, the
fixed-range int8 model has the same ops and the same accuracy as the
calibrated one, and it runs in one XNNPACK partition.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.export import int8_tflite, run_frozen
from tf_deraindrop.cli import export as export_cli
from tf_deraindrop.export.convert import (
    convert,
    float_ops,
    representative_dataset,
    write_saved_model,
)
from tf_deraindrop.export.int8 import calibrate
from tf_deraindrop.export.int8 import ranges as int8_ranges
from tf_deraindrop.export.int8.bias_correction import bias_shifts
from tf_deraindrop.export.samples import synthetic_images
from tf_deraindrop.metrics import psnr

H, W = 32, 48
GENERATOR_SEED = 5  # of the conftest's `generator`


@pytest.fixture(scope="module")
def saved_model(generator, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("saved") / "reference")
    write_saved_model(generator, path, H, W)
    return path


def _reference_ranges(saved_model, samples) -> dict[str, tuple[float, float]]:
    """The converter's calibrator's min and max of every tensor, by TFLite tensor name."""
    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["derain"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(samples, False)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True  # the logged ranges, before quantizing
    tree = schema.ModelT.InitFromPackedBuf(bytearray(converter.convert()), 0)
    found = {}
    for tensor in tree.subgraphs[0].tensors:
        q = tensor.quantization
        if q is not None and q.min is not None and len(q.min) == 1:
            found[tensor.name.decode()] = (float(q.min[0]), float(q.max[0]))
    return found


# The converter's calibrator (the reference here) runs TensorFlow's own deprecated interpreter.
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_ranges_equal_the_converters_calibrator(frozen, saved_model, samples):
    ours = int8_ranges.record_ranges(frozen, samples, precision="float32")
    reference = _reference_ranges(saved_model, samples)
    points = set(ours.values)
    matched = {}
    for name, (low, high) in reference.items():
        # A TFLite tensor is named after the TF ops fused into it ("Relu_3;add_1").
        hits = {p for p in (part + ":0" for part in name.split(";")) if p in points}
        if len(hits) == 1:
            matched[hits.pop()] = (min(low, 0.0), max(high, 0.0))
    assert len(matched) >= 0.9 * len(points), (len(matched), len(points))
    equal = 0

    def close(a, b, scale):
        return abs(a - b) <= 1e-4 * max(1.0, scale)

    for name, (low, high) in matched.items():
        mine = ours.values[name]
        if close(low, mine[0], high - low) and close(high, mine[1], high - low):
            equal += 1
            continue
        # LiteRT runs element-wise ops in place: the calibrator then logs, as
        # this tensor, the values of the op's output written over it. So a
        # range that differs is ours joined with another tensor's.
        assert any(
            close(low, min(mine[0], other[0]), high - low)
            and close(high, max(mine[1], other[1]), high - low)
            for other in ours.values.values()
        ), (name, mine, (low, high))
    assert equal >= 0.6 * len(matched), (equal, len(matched))


def test_bfloat16_ranges_within_its_rounding(frozen, samples):
    exact = int8_ranges.record_ranges(frozen, samples, precision="float32")
    fast = int8_ranges.record_ranges(frozen, samples, precision="bfloat16")
    assert fast.precision == "bfloat16" and set(fast.values) == set(exact.values)
    widths = np.array([hi - lo for lo, hi in exact.values.values()])
    errors = np.array(
        [
            max(abs(a[0] - b[0]), abs(a[1] - b[1]))
            for a, b in zip(exact.values.values(), fast.values.values())
        ]
    )
    # bfloat16 keeps 8 bits of mantissa; errors compound over the network's depth.
    assert np.median(errors / np.maximum(widths, 1e-6)) < 0.01
    assert np.max(errors / np.maximum(widths, 1e-6)) < 0.1


def test_fixed_ranges_convert_like_the_calibrated_model(
    generator, saved_model, frozen, samples, held_out, tmp_path
):
    from tf_deraindrop.export.analysis import op_counts
    from tf_deraindrop.inference.tflite import LiteDerainer

    reference = convert(saved_model, "int8", representative_dataset(samples, False))
    graph, ranges = calibrate.fixed_range_graph(generator, H, W, samples, precision="float32")
    # The biases are corrected for the int8 kernels (on the first BIAS_SAMPLES samples).
    plain, _ = calibrate.fixed_range_graph(
        generator, H, W, samples, precision="float32", correct_biases=False
    )
    shifts = bias_shifts(plain.frozen, samples[: calibrate.BIAS_SAMPLES])
    np.testing.assert_allclose(
        _constants(graph.frozen, shifts),
        _constants(plain.frozen, shifts) - _stack(shifts),
        atol=1e-6,
    )
    assert np.abs(_stack(shifts)).max() > 1e-4
    paths = {"fixed": int8_tflite(graph, tmp_path, "fixed.tflite", H, W)}
    paths["reference"] = tmp_path / "reference.tflite"
    paths["reference"].write_bytes(reference)
    assert op_counts(paths["fixed"]) == op_counts(paths["reference"])

    expected = np.asarray(generator(held_out[None], training=False)["outputs"][-1])[0]
    scores = {
        name: psnr(
            np.clip(LiteDerainer(str(path)).run_tile(held_out), 0, 1), np.clip(expected, 0, 1)
        )
        for name, path in paths.items()
    }
    assert scores["fixed"] >= scores["reference"] - 0.5, scores


def _constants(frozen, names) -> np.ndarray:
    import tensorflow as tf

    nodes = {node.name: node for node in frozen.graph_def.node}
    return np.concatenate([tf.make_ndarray(nodes[name].attr["value"].tensor) for name in names])


def _stack(shifts) -> np.ndarray:
    return np.concatenate([np.asarray(value, np.float32) for value in shifts.values()])


def test_float_ops_names_what_stays_float(saved_model):
    model = convert(saved_model, "none")
    left = float_ops(model)
    assert "CONV_2D" in left and "ADD" in left


def test_points_skip_fused_and_same_scale_ops(frozen):
    nodes = {node.name: node for node in frozen.graph_def.node}
    points = int8_ranges.quantization_points(frozen)
    ops = {nodes[p.split(":")[0]].op for p in points}
    assert ops <= {"Placeholder", "Conv2D", "BiasAdd", "AddV2", "Mul", "Relu"}
    assert frozen.input in points
    for output in frozen.outputs:  # Identity nodes: the tensors they pass on have ranges
        (source,) = nodes[output.split(":")[0]].input
        assert source + ":0" in points
    for name in points:
        node = nodes[name.split(":")[0]]
        if node.op == "Conv2D":  # a conv's range is taken after its bias and ReLU
            users = [n for n in frozen.graph_def.node if name.split(":")[0] in n.input]
            assert not (len(users) == 1 and users[0].op == "BiasAdd")


def test_lite_generator_dilated_convs_convert(tmp_path):
    """SpaceToBatchND -> Conv2D -> BatchToSpaceND -> BiasAdd stays one int8 CONV_2D."""
    from tf_deraindrop.models import LiteGenerator

    lite = LiteGenerator.from_preset("nano")
    lite.build((None, None, None, 3))
    samples = synthetic_images(2, H, W, seed=4)
    graph, _ = calibrate.fixed_range_graph(lite, H, W, samples, precision="float32")
    int8_tflite(graph, tmp_path, "lite.tflite", H, W)


def test_cli_calibrator_and_equalize_flags(tmp_path, calibration_dir, capsys, generator_file):

    base = ["--weights", str(generator_file), "--height", "32", "--width", "48"]
    base += ["--quantize", "int8"]
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(
            [*base, "--calibration-dir", calibration_dir, "--calibrator", "magic", "-o", "x"]
        )
    assert exit_info.value.code == 2 and "--calibrator" in capsys.readouterr().err
    out = tmp_path / "m.tflite"
    argv = [*base, "--calibration-dir", calibration_dir, "--calibration-samples", "2"]
    # --equalize sets the TensorFlow ranges' channel equalization only.
    for wrong in (["--calibrator", "converter"], ["--quantize", "dynamic"]):
        assert export_cli.main([*argv, "--equalize", "on", *wrong, "-o", str(out)]) == 2
        assert "--equalize on" in capsys.readouterr().err and not out.exists()
    assert (
        export_cli.main([*argv, "--quiet", "--min-psnr", "0", "--equalize", "on", "-o", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "measured in TensorFlow" in printed and out.is_file()
    assert "channels equalized in" in printed, printed


def _int8_kernels(frozen):
    """`frozen` with every biased convolution's kernel rounded as the converter stores it."""
    import tensorflow as tf

    from tf_deraindrop.export.frozen import FrozenGraph, copy_graph_def
    from tf_deraindrop.export.int8.bias_correction import int8_kernel

    graph_def = copy_graph_def(frozen.graph_def)
    nodes = {node.name: node for node in graph_def.node}
    for node in graph_def.node:
        kernel = nodes.get(node.input[1].split(":")[0]) if node.op == "Conv2D" else None
        if kernel is not None and kernel.op == "Const":
            value = tf.make_ndarray(kernel.attr["value"].tensor)
            kernel.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(int8_kernel(value)))
    return FrozenGraph(graph_def, frozen.input, frozen.outputs, frozen.height, frozen.width)


def test_bias_correction_lowers_the_error_of_int8_kernels(frozen, samples, held_out):
    from tf_deraindrop.export.int8.bias_correction import bias_corrected

    shifts = bias_shifts(frozen, samples)
    assert shifts and all(np.all(np.isfinite(s)) for s in shifts.values())
    reference = run_frozen(frozen, held_out)
    rounded = run_frozen(_int8_kernels(frozen), held_out)
    corrected = run_frozen(_int8_kernels(bias_corrected(frozen, samples)), held_out)
    plain_error = np.mean((rounded - reference) ** 2)
    corrected_error = np.mean((corrected - reference) ** 2)
    assert plain_error > 0
    assert corrected_error < plain_error, (corrected_error, plain_error)


def test_saturated_sums_clip_each_addend_only_where_the_int8_sum_cannot_change(frozen, samples):
    from tf_deraindrop.export.frozen import consumers, tensor_name
    from tf_deraindrop.export.int8.limits import SATURATION, saturated_ranges

    recorded = int8_ranges.record_ranges(frozen, samples, precision="float32").values
    clipped = saturated_ranges(frozen, recorded)
    readers = consumers(frozen.graph_def)
    checked = 0
    for node in frozen.graph_def.node:
        users = readers.get(node.name + ":0", [])
        if node.op not in ("AddV2", "Add") or len(users) != 1 or users[0].op not in SATURATION:
            continue
        bound = SATURATION[users[0].op]
        a, b = (tensor_name(name) for name in node.input[:2])
        if a not in recorded or b not in recorded:
            continue
        for name, other in ((a, b), (b, a)):
            (low, high), (new_low, new_high) = recorded[name], clipped[name]
            assert low <= new_low <= new_high <= high
            # Past the new bound the sum saturates whatever the other addend is.
            assert new_high == high or new_high + recorded[other][0] >= bound - 1e-6
            assert new_low == low or new_low + recorded[other][1] <= -bound + 1e-6
            checked += new_high < high or new_low > low
    assert checked > 0, "no LSTM gate addend was clipped: the test checks nothing"


def test_relu_sums_clip_an_addend_only_below_where_every_sum_is_zero(frozen, samples):
    from tf_deraindrop.export.frozen import consumers, tensor_name
    from tf_deraindrop.export.int8.limits import relu_sum_ranges

    recorded = int8_ranges.record_ranges(frozen, samples, precision="float32").values
    clipped = relu_sum_ranges(frozen, recorded)
    readers = consumers(frozen.graph_def)
    changed = [name for name in recorded if clipped[name] != recorded[name]]
    # The image parts of both halves' first convolutions (shared by the recurrent steps).
    assert "attentive_recurrent/BiasAdd:0" in changed and "autoencoder/BiasAdd:0" in changed
    for name in changed:
        (low, high), (new_low, new_high) = recorded[name], clipped[name]
        assert new_high == high and low < new_low <= 0
        for add in readers[name]:
            # Every reader is a sum read only by a ReLU, and below the new
            # bound that sum is negative whatever the other addend is.
            assert add.op in ("AddV2", "Add")
            assert [user.op for user in readers[add.name + ":0"]] == ["Relu"]
            (other,) = [tensor_name(n) for n in add.input if tensor_name(n) != name]
            assert new_low + recorded[other][1] <= 1e-6
