"""Shared by the export tests: an int8 conversion checked op by op, the export command."""

from __future__ import annotations

from pathlib import Path

from tf_deraindrop.cli import export as export_cli


def int8_tflite(graph, folder: Path, name: str, height: int, width: int) -> Path:
    """Converts a fixed-range graph (`export.int8.calibrate` or `.qat`) to `folder / name`.

    Asserts that every op is int8 and that XNNPACK runs the whole model.
    """
    from tf_deraindrop.export.analysis import xnnpack_coverage
    from tf_deraindrop.export.convert import convert, float_ops, write_saved_model

    saved = str(folder / "saved")
    write_saved_model(graph, saved, height, width)
    model = convert(saved, "int8")
    assert float_ops(model) == []
    path = folder / name
    path.write_bytes(model)
    coverage = xnnpack_coverage(path)
    assert coverage.complete, str(coverage)
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """`deraindrop export ARGV` in this process: its exit status and standard error."""

    code = export_cli.main(argv)
    return code, capsys.readouterr().err


def run_frozen(frozen, image):
    """The derained output of a `FrozenGraph` on one `(H, W, 3)` image, as `(H, W, 3)`."""
    import numpy as np
    import tensorflow as tf

    @tf.function
    def run(x):
        (out,) = tf.graph_util.import_graph_def(
            frozen.graph_def, input_map={frozen.input: x}, return_elements=[frozen.outputs[0]]
        )
        return out

    return np.asarray(run(tf.constant(image[None], tf.float32)))[0]
