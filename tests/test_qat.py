"""Quantization-aware fine-tuning (export.qat) and `export.tflite --qat-steps`.

A few steps on a small generator at 32 x 48: the graph still converts to a
valid int8 model that XNNPACK runs in one partition, the fine-tuning
changes the weights and lowers the int8-simulated error on its crops, and
bad flags fail before any work with exit status 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from export import qat, tflite
from export.samples import synthetic_images
from tests.export_helpers import int8_tflite, run_cli

H, W = 32, 48
GENERATOR_SEED = 7  # of the conftest's `generator`


@pytest.fixture(scope="module")
def images():
    return synthetic_images(3, 40, 56, seed=11)


def test_a_few_steps_give_a_valid_int8_export(generator, images, tmp_path):
    from tf_deraindrop.lite import LiteDerainer

    samples = synthetic_images(2, H, W, seed=1)
    graph, report = qat.fine_tune(generator, H, W, samples, images, steps=3, crop=32, batch=1)
    assert report.steps == 3 and len(report.losses) == 3
    assert all(np.isfinite(report.losses)) and report.weights > 0
    path = int8_tflite(graph, tmp_path, "qat.tflite", H, W)
    out = LiteDerainer(str(path)).run_tile(samples[0])
    assert out.shape == (H, W, 3) and np.isfinite(out).all()


def test_fine_tuning_changes_weights_and_lowers_the_error(generator, images):
    """On one fixed crop the int8-simulated error against float must fall."""
    import tensorflow as tf

    samples = synthetic_images(1, H, W, seed=1)
    crop = [images[0][:32, :32]]  # one image of the crop's size: every step sees it (or its flip)
    _, report = qat.fine_tune(
        generator, H, W, samples, crop, steps=24, crop=32, batch=1, learning_rate=1e-3
    )
    first, last = report.loss_change(window=4)
    assert last < 0.9 * first, report.losses

    graph, _ = qat.fine_tune(generator, H, W, samples, crop, steps=2, crop=32, batch=1)
    original = qat.freeze(generator, H, W).graph_def
    before = {n.name: n for n in original.node if n.op == "Const"}
    changed = sum(
        not np.array_equal(
            tf.make_ndarray(node.attr["value"].tensor),
            tf.make_ndarray(before[node.name].attr["value"].tensor),
        )
        for node in graph.graph_def.node
        if node.op == "Const" and node.name in before and node.name.endswith("filter")
    )
    assert changed > 10


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
    qat_flags = ["--qat-steps", "5", "--data-dir", calibration_dir]
    code, err = run_cli([*base, *int8, *qat_flags, "--calibrator", "converter"], capsys)
    assert code == 2 and "--calibrator converter" in err
    assert list(out.iterdir()) == []


def test_cli_exports_after_fine_tuning(tmp_path, calibration_dir, capsys, generator_file):
    out = tmp_path / "qat.tflite"
    argv = ["--weights", str(generator_file), "--height", "32", "--width", "48", "--quiet"]
    argv += ["--quantize", "int8", "--calibration-dir", calibration_dir]
    argv += ["--calibration-samples", "2"]
    argv += ["--qat-steps", "2", "--data-dir", calibration_dir, "--qat-crop", "32", "-o", str(out)]
    assert tflite.main([*argv, "--min-psnr", "0"]) == 0
    printed = capsys.readouterr().out
    assert "quantization-aware fine-tuning: 2 steps" in printed and out.is_file()
