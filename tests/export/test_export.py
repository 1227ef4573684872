"""TFLite export: every mode against Keras, signature, uint8 I/O, XNNPACK coverage, bad input.

Each conversion happens once per module (fixtures), at 32 x 48, from a
generator with He-initialised random weights imported through the authors'
checkpoint format, so that outputs vary across the image and accuracy
checks mean something.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers.export import run_cli
from tf_deraindrop.cli import benchmark as benchmark_cli
from tf_deraindrop.cli import export as export_cli
from tf_deraindrop.export import tflite
from tf_deraindrop.export.analysis import op_counts, xnnpack_coverage
from tf_deraindrop.export.errors import VerificationFailed
from tf_deraindrop.export.samples import synthetic_images
from tf_deraindrop.export.verify import DEFAULT_MIN_PSNR
from tf_deraindrop.inference.tflite import LiteDerainer, LiteModelError, load_interpreter
from tf_deraindrop.metrics import psnr
from tf_deraindrop.utils.images import to_uint8

H, W = 32, 48
GENERATOR_SEED = 3  # of the conftest's `official_checkpoint` and `generator`


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def image(request):
    """A crop of a real photo (held out from int8 calibration), else a synthetic scene."""
    from tf_deraindrop.utils.images import read_image

    try:
        folder = request.getfixturevalue("real_raindrops_dir")
    except pytest.skip.Exception:
        return synthetic_images(1, H, W, seed=9)[0]
    return read_image(folder / "case2.jpg")[200 : 200 + H, 300 : 300 + W]


def export(generator, out_dir, name, **kwargs):
    return tflite.export_tflite(
        generator, str(out_dir / name), H, W, progress=False, log=lambda _: None, **kwargs
    )


@pytest.fixture(scope="module")
def float32_model(generator, out_dir):
    return export(generator, out_dir, "none.tflite")


@pytest.fixture(scope="module")
def int8_model(generator, out_dir, calibration_dir):
    return export(
        generator, out_dir, "int8.tflite", quantize="int8", calibration_dir=calibration_dir
    )


def keras_output(generator, image):
    return np.asarray(generator(image[None], training=False)["outputs"][-1])[0]


def test_float32_equals_keras_within_1e4(float32_model, generator, image):
    ours = LiteDerainer(float32_model.path).run_tile(image)
    assert np.abs(ours - keras_output(generator, image)).max() < 1e-4
    assert float32_model.verification.passed
    assert min(float32_model.verification.psnr) > 80


def test_float32_file_weighs_the_weights(float32_model, generator):
    # No folded full-resolution constants (zero LSTM state, A_0 = 0.5).
    assert float32_model.size == os.path.getsize(float32_model.path)
    assert abs(float32_model.size / (4 * generator.count_params()) - 1) < 0.05


def test_signature_names(float32_model, generator, out_dir):
    interpreter = load_interpreter(float32_model.path)
    assert interpreter.get_signature_list() == {
        "derain": {"inputs": ["image"], "outputs": ["derained"]}
    }
    with_attention = export(generator, out_dir, "att.tflite", with_attention=True)
    signatures = load_interpreter(with_attention.path).get_signature_list()
    assert signatures["derain"]["inputs"] == ["image"]
    assert sorted(signatures["derain"]["outputs"]) == ["attention", "derained"]
    pixels = to_uint8(synthetic_images(1, H, W)[0])
    out, attention = LiteDerainer(with_attention.path).derain(pixels, return_attention=True)
    expected = generator(pixels[None].astype(np.float32) / 255)["attention"][-1]
    assert attention.shape == (H, W) and out.shape == (H, W, 3) and out.dtype == np.uint8
    assert np.abs(attention - np.asarray(expected)[0, ..., 0]).max() < 1e-4


def test_subpixel_upsampling_equals_the_transposed_conv():
    import tensorflow as tf

    from tf_deraindrop.export.graph import DeployGraph, subpixel_kernel
    from tf_deraindrop.layers import reflect_pad_average_pool

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 5, 7, 6)).astype(np.float32)
    kernel = rng.standard_normal((4, 4, 3, 6)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    transposed = tf.nn.conv2d_transpose(x, kernel, (1, 10, 14, 3), strides=2, padding="SAME")
    expected = tf.nn.relu(reflect_pad_average_pool(tf.nn.bias_add(transposed, bias)))
    got = DeployGraph._upsample(x, (subpixel_kernel(kernel), np.tile(bias, 4)))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_graph_has_only_ops_xnnpack_takes(float32_model):
    # MIRROR_PAD and int8 AVERAGE_POOL_2D, MINIMUM/MAXIMUM are what XNNPACK
    # refuses; the reflect pad + pool is slices and adds instead.
    # TRANSPOSE_CONV is taken, but runs at half the rate of a convolution.
    for op in ("MIRROR_PAD", "AVERAGE_POOL_2D", "MINIMUM", "MAXIMUM", "CAST", "TRANSPOSE_CONV"):
        assert op not in float32_model.ops


def test_xnnpack_takes_every_op_float32_and_int8(float32_model, int8_model):
    for report in (float32_model, int8_model):
        coverage = xnnpack_coverage(report.path)
        assert coverage.complete, str(coverage)
        assert coverage.total == sum(op_counts(report.path).values())


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_weight_quantized_modes(mode, generator, out_dir, image):
    report = export(generator, out_dir, f"{mode}.tflite", quantize=mode)
    assert abs(report.size_ratio - 1) < 0.05
    assert xnnpack_coverage(report.path).complete
    ours = LiteDerainer(report.path).run_tile(image)
    db = psnr(ours, keras_output(generator, image))
    assert db >= DEFAULT_MIN_PSNR[mode]
    if mode == "float16":
        assert np.abs(ours - keras_output(generator, image)).max() < 0.02


def test_int8_close_to_keras(int8_model, generator, image):
    assert abs(int8_model.size_ratio - 1) < 0.05
    assert "calibration" in int8_model.calibration.lower()
    ours = LiteDerainer(int8_model.path).run_tile(image)
    assert psnr(ours, keras_output(generator, image)) >= DEFAULT_MIN_PSNR["int8"]
    assert int8_model.verification.passed


@pytest.mark.parametrize("mode", ["none", "int8"])
def test_uint8_io_is_pixels(mode, generator, out_dir, calibration_dir, image):
    report = export(
        generator,
        out_dir,
        f"{mode}_u8.tflite",
        quantize=mode,
        uint8_io=True,
        calibration_dir=calibration_dir if mode == "int8" else None,
    )
    runner = load_interpreter(report.path).get_signature_runner("derain")
    for detail in (runner.get_input_details()["image"], runner.get_output_details()["derained"]):
        assert detail["dtype"] == np.uint8
        scale, zero_point = detail["quantization"]
        assert zero_point == 0 and scale == pytest.approx(1 / 255)
    pixels = to_uint8(image)
    out = runner(image=pixels[None])["derained"][0]
    expected = to_uint8(keras_output(generator, pixels.astype(np.float32) / 255))
    diff = np.abs(out.astype(int) - expected)
    coverage = xnnpack_coverage(report.path)
    if mode == "none":
        assert diff.max() <= 1  # rounding only
        assert coverage.complete, str(coverage)
    else:
        assert psnr(out / 255.0, expected / 255.0) >= DEFAULT_MIN_PSNR["int8"]
        # Only the uint8 <-> int8 requantizations at the two ends stay outside.
        assert coverage.partitions == 1 and set(coverage.not_taken) == {"QUANTIZE"}


def test_mixed_precision_generator_exports_float32(generator, float32_model, out_dir, image):
    from tf_deraindrop.models import Generator

    mixed = Generator(dtype="mixed_float16")
    mixed.build((None, None, None, 3))
    mixed.set_weights(generator.get_weights())
    report = export(mixed, out_dir, "mixed.tflite")
    assert report.verification.passed
    tensors = load_interpreter(report.path, xnnpack=False).get_tensor_details()
    assert {np.dtype(t["dtype"]) for t in tensors} <= {np.dtype("float32"), np.dtype("int32")}
    ours = LiteDerainer(report.path).run_tile(image)
    np.testing.assert_allclose(ours, LiteDerainer(float32_model.path).run_tile(image), atol=1e-5)


def test_verification_failure_keeps_rejected_file(generator, tmp_path):
    output = tmp_path / "model.tflite"
    with pytest.raises(VerificationFailed, match="rejected"):
        tflite.export_tflite(
            generator, str(output), 16, 16, min_psnr=1000, progress=False, log=lambda _: None
        )
    assert not output.exists()
    assert (tmp_path / "model.tflite.rejected").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite.rejected"]


def test_cli_bad_input(tmp_path, official_checkpoint, calibration_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    model = str(out / "m.tflite")
    base = ["--height", "32", "--width", "48", "-o", model]
    code, err = run_cli(["--weights", str(tmp_path / "missing.pkl"), *base], capsys)
    assert code == 2 and "missing.pkl" in err
    bad = tmp_path / "bad.pkl"
    bad.write_text("not a checkpoint")
    code, err = run_cli(["--weights", str(bad), *base], capsys)
    assert code == 2 and "bad.pkl" in err
    weights = ["--weights", official_checkpoint]
    code, err = run_cli([*weights, "--height", "30", "--width", "48", "-o", model], capsys)
    assert code == 2 and "--height 30" in err and "multiple of 4" in err
    code, err = run_cli([*weights, "--quantize", "int8", *base], capsys)
    assert code == 2 and "--calibration-dir" in err
    code, err = run_cli([*weights, "--calibration-dir", str(tmp_path / "nowhere"), *base], capsys)
    assert code == 2 and "--calibration-dir" in err and "nowhere" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(
        [*weights, "--quantize", "int8", "--calibration-dir", str(empty), *base], capsys
    )
    assert code == 2 and "no images" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    code, err = run_cli(
        [*weights, "--quantize", "int8", "--calibration-dir", str(broken), *base], capsys
    )
    assert code == 2 and "could be read" in err and "a.jpg" in err
    assert list(out.iterdir()) == []  # nothing half-written


def test_cli_exports_and_prints_the_summary(official_checkpoint, tmp_path, capsys):
    model = tmp_path / "m.tflite"
    code = export_cli.main(
        [
            "--weights",
            official_checkpoint,
            "--height",
            "16",
            "--width",
            "16",
            "--quiet",
            "-o",
            str(model),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and model.is_file()
    assert "XNNPACK delegate: " in out and "CONV_2D" in out and "PSNR" in out and "MB" in out
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


def test_not_a_tflite(tmp_path, capsys):
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(LiteModelError, match="fake.tflite"):
        LiteDerainer(fake)
    with pytest.raises(LiteModelError, match="no such file"):
        LiteDerainer(tmp_path / "absent.tflite")
    assert benchmark_cli.main([str(fake)]) == 2
    assert "fake.tflite" in capsys.readouterr().err


def test_benchmark_table_side_by_side(float32_model, capsys):
    code = benchmark_cli.main(
        [float32_model.path, "--threads", "1", "--runs", "2", "--warmup", "1"]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 2 and "TFLite none.tflite" in rows[0] and "Keras" in rows[1]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        median, p90, peak = float(cells[1]), float(cells[2]), float(cells[3])
        assert 0 < median <= p90 and peak > 0


def test_benchmark_low_memory_row(float32_model, capsys):
    args = [float32_model.path, "--threads", "1", "--runs", "1", "--warmup", "0"]
    assert benchmark_cli.main([*args, "--no-keras", "--low-memory"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 2 and "low memory" in rows[1] and "low memory" not in rows[0]
