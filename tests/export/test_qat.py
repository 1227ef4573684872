"""Quantization-aware fine-tuning (`export.int8.qat`) and `deraindrop export --qat-steps`.

A few steps on a small generator at 32 x 48: the graph still converts to a
valid int8 model that XNNPACK runs in one partition, the fine-tuning
changes the weights and lowers the int8-simulated error on its crops, and
bad flags fail before any work with exit status 2. The command line's
fine-tuning runs in `tests/cpu/test_qat_without_onednn.py`, with the CPU
kernels that every x86 CPU has.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.export import int8_tflite, run_cli, run_frozen
from tf_deraindrop.export.int8 import qat, qat_training
from tf_deraindrop.export.samples import synthetic_images

H, W = 32, 48
GENERATOR_SEED = 7  # of the conftest's `generator`


@pytest.fixture(scope="module")
def images():
    return synthetic_images(3, 40, 56, seed=11)


@pytest.fixture(scope="module")
def ranges_trained(generator, images):
    """Two steps, ranges trained too, from an equalized graph: `(graph, report, samples)`."""
    samples = synthetic_images(1, H, W, seed=1)
    graph, report = qat.fine_tune(
        generator,
        H,
        W,
        samples,
        images,
        steps=2,
        crop=32,
        learning_rate=1e-3,
        range_learning_rate=1e-2,
        equalize=True,
    )
    assert report.equalized and report.ranges_trained
    return graph, report, samples


def test_a_few_steps_give_a_valid_int8_export(ranges_trained, tmp_path):
    """Trained weights, equalized channels and trained ranges convert in one XNNPACK partition."""
    from tf_deraindrop.inference.tflite import LiteDerainer

    graph, report, samples = ranges_trained
    assert report.steps == 2 and len(report.losses) == 2
    assert all(np.isfinite(report.losses)) and report.weights > 0
    path = int8_tflite(graph, tmp_path, "qat.tflite", H, W)
    out = LiteDerainer(str(path)).run_tile(samples[0])
    assert out.shape == (H, W, 3) and np.isfinite(out).all()


def test_fine_tuning_changes_weights_and_lowers_the_error(generator, images, ranges_trained):
    """On one fixed crop the int8-simulated error against float must fall.

    The kernels change, and the ranges stay calibrated by default or move
    when trained.
    """
    import tensorflow as tf

    samples = synthetic_images(1, H, W, seed=1)
    crop = [images[0][:32, :32]]  # one image of the crop's size: every step sees it (or its flip)
    fixed, report = qat.fine_tune(
        generator, H, W, samples, crop, steps=24, crop=32, learning_rate=1e-3, equalize=False
    )
    first, last = report.loss_change(window=4)
    assert last < 0.9 * first, report.losses

    calibrated, _ = qat.fine_tune(generator, H, W, samples, crop, steps=0, equalize=False)
    assert _range_constants(fixed) == _range_constants(calibrated)
    equalized, _ = qat.fine_tune(generator, H, W, samples, crop, steps=0, equalize=True)
    trained = _range_constants(ranges_trained[0])
    moved = [k for k, v in _range_constants(equalized).items() if trained[k] != v]
    assert len(moved) > len(trained) // 2
    original = qat.freeze(generator, H, W).graph_def
    before = {n.name: n for n in original.node if n.op == "Const"}
    changed = sum(
        not np.array_equal(
            tf.make_ndarray(node.attr["value"].tensor),
            tf.make_ndarray(before[node.name].attr["value"].tensor),
        )
        for node in fixed.graph_def.node
        if node.op == "Const" and node.name in before and node.name.endswith("filter")
    )
    assert changed > 10


def test_trained_weights_go_back_unequalized(generator, ranges_trained):
    """`with_trained_weights` undoes equalization: the same float output, unequalized weights."""
    import tensorflow as tf

    from tf_deraindrop.export.int8.qat_graph import with_trained_weights

    tuned, _, samples = ranges_trained
    original = qat.freeze(generator, H, W)
    plain = with_trained_weights(original, original, tuned.frozen, tuned.scales)

    image = samples[0]
    np.testing.assert_allclose(run_frozen(plain, image), run_frozen(tuned.frozen, image), atol=1e-4)
    # Unequalized: a weight no longer carries the scales (they reach 4x).
    names = {n.name for n in original.graph_def.node if n.op == "Const"}
    changed = [
        np.abs(tf.make_ndarray(a.attr["value"].tensor) - tf.make_ndarray(b.attr["value"].tensor))
        for a, b in zip(plain.graph_def.node, original.graph_def.node)
        if a.name in names and a.op == "Const" and a.attr["value"].tensor.tensor_shape.dim
    ]
    equalized = [
        np.abs(tf.make_ndarray(a.attr["value"].tensor) - tf.make_ndarray(b.attr["value"].tensor))
        for a, b in zip(tuned.frozen.graph_def.node, original.graph_def.node)
        if a.name in names and a.op == "Const" and a.attr["value"].tensor.tensor_shape.dim
    ]
    assert max(map(np.max, changed)) < 0.5 * max(map(np.max, equalized))


def _range_constants(graph) -> dict[str, float]:
    import tensorflow as tf

    return {
        node.name: float(tf.make_ndarray(node.attr["value"].tensor))
        for node in graph.graph_def.node
        if node.op == "Const" and node.name.endswith(("/range/min", "/range/max"))
    }


def test_bad_arguments(generator, images):
    samples = synthetic_images(1, H, W)
    with pytest.raises(ValueError, match="rainy images"):
        qat.fine_tune(generator, H, W, samples, [], steps=2)
    with pytest.raises(ValueError, match="steps"):
        qat.fine_tune(generator, H, W, samples, images, steps=-1)
    with pytest.raises(ValueError, match="crop"):
        qat.fine_tune(generator, H, W, samples, images, steps=1, crop=30)


def test_cli_bad_qat_input(tmp_path, calibration_dir, capsys, generator_file):
    out = tmp_path / "out"
    out.mkdir()
    base = ["--weights", str(generator_file), "--height", "32", "--width", "48"]
    base += ["-o", str(out / "m.tflite")]
    int8 = ["--quantize", "int8", "--calibration-dir", calibration_dir]
    code, err = run_cli([*base, *int8, "--qat-steps", "5"], capsys)
    assert code == 2 and "--qat-steps" in err and "--data-dir" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli([*base, *int8, "--qat-steps", "5", "--data-dir", str(empty)], capsys)
    assert code == 2 and "--data-dir" in err and "no images" in err
    code, err = run_cli(
        [*base, *int8, "--qat-steps", "5", "--data-dir", str(tmp_path / "nowhere")], capsys
    )
    assert code == 2 and "nowhere" in err
    code, err = run_cli([*base, "--qat-steps", "5", "--data-dir", calibration_dir], capsys)
    assert code == 2 and "--quantize int8" in err
    code, err = run_cli([*base, *int8, "--qat-steps", "-1", "--data-dir", calibration_dir], capsys)
    assert code == 2 and "--qat-steps" in err
    code, err = run_cli([*base, *int8, "--data-dir", calibration_dir], capsys)
    assert code == 2 and "--data-dir" in err and "--qat-steps" in err
    code, err = run_cli([*base, *int8, "--qat-range-lr", "3e-3"], capsys)
    assert code == 2 and "--qat-range-lr" in err and "--qat-steps" in err
    qat_flags = ["--qat-steps", "5", "--data-dir", calibration_dir]
    code, err = run_cli([*base, *int8, *qat_flags, "--qat-range-lr", "-1"], capsys)
    assert code == 2 and "--qat-range-lr" in err
    code, err = run_cli([*base, *int8, *qat_flags, "--calibrator", "converter"], capsys)
    assert code == 2 and "--calibrator converter" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("low, high", [(0.0, 2.0), (-1.5, 0.7), (-3.0, 0.0)])
def test_range_gradient_is_that_of_straight_through_rounding(low, high):
    """The registered gradient equals autodiff of the same int8 steps written with STE rounding.

    Checked for the input and for the log of the range's scale, the one
    parameter a range trains (its zero point held), on values inside and
    outside the range.
    """
    import tensorflow as tf

    qat_training.register_range_gradient()
    x_value = np.random.default_rng(3).uniform(1.3 * low - 0.5, 1.3 * high + 0.5, 400)
    x_value = x_value.astype(np.float32)
    weights = np.random.default_rng(4).normal(size=400).astype(np.float32)

    @tf.function
    def registered(x, log_scale):
        graph = tf.compat.v1.get_default_graph()
        with graph.gradient_override_map({"FakeQuantWithMinMaxVars": qat_training.RANGE_GRADIENT}):
            q = tf.quantization.fake_quant_with_min_max_vars(
                x, low * tf.exp(log_scale), high * tf.exp(log_scale), num_bits=8
            )
        return q, tf.gradients(tf.reduce_sum(weights * q), [x, log_scale])

    @tf.function
    def straight_through(x, log_scale):
        step = (high - low) * tf.exp(log_scale) / 255.0
        zero = tf.stop_gradient(tf.clip_by_value(tf.round(-low * tf.exp(log_scale) / step), 0, 255))
        # Clipped before rounding, as the kernel clamps its input first.
        levels = tf.clip_by_value(x / step + zero, 0.0, 255.0)
        levels = levels + tf.stop_gradient(tf.round(levels) - levels)
        q = (levels - zero) * step
        return q, tf.gradients(tf.reduce_sum(weights * q), [x, log_scale])

    x, log_scale = tf.constant(x_value), tf.constant(0.1)
    q, (dx, dscale) = registered(x, log_scale)
    q_ste, (dx_ste, dscale_ste) = straight_through(x, log_scale)
    np.testing.assert_allclose(q, q_ste, atol=1e-5)
    inside = np.abs(np.asarray(dx)) > 0
    assert 0 < inside.sum() < len(x_value)  # values on both sides of the bounds
    np.testing.assert_allclose(dx, dx_ste, atol=1e-6)
    np.testing.assert_allclose(dscale, dscale_ste, rtol=1e-4, atol=1e-5)
