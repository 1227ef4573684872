"""Quantization-aware fine-tuning without oneDNN (AVX2-only CPUs).

TensorFlow turns oneDNN off on CPUs without AVX-512, and its stock CPU
`Conv2DBackpropInput` rejects dilation rates over 1: QAT differentiates the
export graph's dilated convolutions, so it computes them undilated
(`without_dilation`). `TF_ENABLE_ONEDNN_OPTS=0` gives the stock kernels on
any CPU; it must be set before TensorFlow loads, hence the subprocess.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.export import run_frozen
from tests.helpers.train import REPO, env
from tf_deraindrop.export.frozen import FrozenGraph, freeze
from tf_deraindrop.export.int8.qat_graph import without_dilation

GENERATOR_SEED = 5  # of the conftest's `generator`: random weights, varied outputs


def _dilated(graph_def) -> list[str]:
    return [
        node.name
        for node in graph_def.node
        if node.op in ("Conv2D", "DepthwiseConv2dNative")
        and any(rate != 1 for rate in node.attr["dilations"].list.i)
    ]


@pytest.mark.parametrize("height, width", [(32, 48), (36, 52)])
def test_undilated_graph_computes_the_same_output(generator, height, width):
    """No dilated convolution is left, and the output is the original's to float tolerance.

    36 x 52 is not a multiple of the largest rate (16): the padding to a
    multiple of the rate and the crop back are exercised too.
    """
    frozen = freeze(generator, height, width)
    assert len(_dilated(frozen.graph_def)) == 4  # rates 2, 4, 8 and 16
    rewritten = without_dilation(frozen.graph_def)
    assert _dilated(rewritten) == []
    ops = [node.op for node in rewritten.node]
    assert ops.count("SpaceToBatchND") == ops.count("BatchToSpaceND") == 4
    undilated = FrozenGraph(rewritten, frozen.input, frozen.outputs, frozen.height, frozen.width)
    image = np.random.default_rng(2).uniform(0, 1, (height, width, 3)).astype(np.float32)
    expected, out = run_frozen(frozen, image), run_frozen(undilated, image)
    assert np.ptp(expected) > 1e-3  # random weights: an output that varies
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_a_graph_without_dilation_is_left_as_it_is():
    from tf_deraindrop.models import LiteGenerator

    student = LiteGenerator.from_preset("nano")
    student.build((None, None, None, 3))
    graph_def = freeze(student, 32, 48).graph_def
    assert without_dilation(graph_def) == graph_def


def test_cli_fine_tunes_with_onednn_off(tmp_path, calibration_dir, generator_file):
    """`export --qat-steps` trains weights and ranges and exports with TensorFlow's stock CPU
    kernels (it failed there before)."""
    out = tmp_path / "qat.tflite"
    argv = [sys.executable, "-m", "tf_deraindrop", "export", "--weights", str(generator_file)]
    argv += ["--height", "32", "--width", "48", "--quiet", "--quantize", "int8"]
    argv += ["--calibration-dir", calibration_dir, "--calibration-samples", "1"]
    argv += ["--qat-steps", "2", "--data-dir", calibration_dir, "--qat-crop", "32"]
    argv += ["--qat-range-lr", "3e-3", "--min-psnr", "0", "-o", str(out)]
    done = subprocess.run(
        argv,
        cwd=REPO,
        env=env(TF_ENABLE_ONEDNN_OPTS="0"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "quantization-aware fine-tuning: 2 steps" in done.stdout and out.is_file()
    assert "ranges trained" in done.stdout
    assert "Fast paths: oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)" in done.stdout
