"""Export the generator to TFLite (LiteRT) for phones, dashcams and edge boxes.

    deraindrop export --weights gen.pkl --height 480 --width 720 \\
        --quantize int8 --calibration-dir rainy_photos/ -o derain_int8.tflite

The model has a static input `(1, H, W, 3)` and one signature, `derain`,
with the input `image` (RGB in [0, 1], or uint8 0..255 with `--io uint8`)
and the output `derained` (same type), plus `attention` (the final map
`A_N`) with `--with-attention`. A `LiteGenerator` also gets a second
signature, `stream`, for video: the frame and the ConvLSTM state carried
from the frame before in, the result and the next state out (`tf_deraindrop.export.int8.stream`,
`tf_deraindrop.inference.tflite.LiteDerainer.stream`). Quantization modes:

* `none`: float32.
* `float16`: float16 weights (half the file); computes in float32 on CPU,
  in float16 on a phone GPU delegate.
* `dynamic`: int8 weights, activations quantized on the fly.
* `int8`: int8 weights and activations, calibrated on rainy photos from
  `--calibration-dir`. The activation ranges are measured in TensorFlow
  (`tf_deraindrop.export.int8.calibrate`: bfloat16 where the CPU has it, over 10x faster than
  the converter's calibrator) unless `--calibrator converter`.

Every export is checked unless `--no-verify`: the `.tflite` runs in
`ai_edge_litert` on held-out images and its output is compared with the
Keras float generator's. Below the mode's PSNR threshold the export fails
(exit code 3) and the file is kept as `<output>.rejected`.

Exit codes: 0 exported, 2 bad input or an output that cannot be written
(full disk, say: the message names the file; nothing is left behind),
3 rejected by verification.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

from tf_deraindrop.export.convert import MODES, WEIGHT_BYTES, convert, write_saved_model
from tf_deraindrop.export.errors import ExportError, VerificationFailed
from tf_deraindrop.export.int8.options import Int8Options
from tf_deraindrop.export.report import ExportReport, reject
from tf_deraindrop.export.samples import ExportImages, gather_images
from tf_deraindrop.export.verify import DEFAULT_MIN_PSNR, verify

__all__ = [
    "DEFAULT_MIN_PSNR",
    "MODES",
    "ExportError",
    "ExportReport",
    "VerificationFailed",
    "WEIGHT_BYTES",
    "export_tflite",
]


def check_arguments(quantize: str, height: int, width: int, calibration_dir: str | None) -> None:
    """Raises `ExportError` for a mode, size or missing calibration folder that cannot work."""
    if quantize not in MODES:
        raise ExportError(f"--quantize {quantize}: choose one of {', '.join(MODES)}")
    for name, value in (("--height", height), ("--width", width)):
        if value < 4 or value % 4:
            raise ExportError(f"{name} {value}: must be a positive multiple of 4")
    if quantize == "int8" and not calibration_dir:
        raise ExportError("--quantize int8 needs --calibration-dir (a folder of rainy photos)")


def _convert_model(
    generator, height, width, quantize, uint8_io, with_attention, calibration, output=None
):
    """The `.tflite` bytes; `calibration` is the int8 representative dataset (or None).

    The SavedModel on the way (26 MB for the full generator) goes into a
    hidden folder beside `output` (or in the system's temporary folder), named as
    `weights.atomic_path` names temporaries: removed at the end, and by the
    next export into that folder if a `kill -9` left it
    (`weights.remove_stale_partials`).
    """
    import shutil

    workdir = os.path.dirname(os.path.abspath(output)) if output else None
    with _writing(output or tempfile.gettempdir(), "its SavedModel on the way"):
        saved_model = tempfile.mkdtemp(prefix=f".derain_export.partial{os.getpid()}.", dir=workdir)
    try:
        in_graph_uint8 = uint8_io and quantize != "int8"
        with _writing(output or saved_model, "its SavedModel on the way"):
            write_saved_model(generator, saved_model, height, width, in_graph_uint8, with_attention)
        return convert(saved_model, quantize, calibration, uint8_io)
    finally:
        shutil.rmtree(saved_model, ignore_errors=True)


@contextlib.contextmanager
def _writing(path: str, what: str = ""):
    """A write error (full disk, no permission) as an `ExportError` naming `path`."""
    import tensorflow as tf

    where = f", {what}" if what else ""
    try:
        yield
    except OSError as err:
        reason = err.strerror or err
        raise ExportError(f"{path}: could not be written{where} ({reason})") from err
    except tf.errors.OpError as err:
        reason = err.message.split("; ")[-1]
        raise ExportError(f"{path}: could not be written{where} ({reason})") from err


def export_tflite(
    generator,
    output: str,
    height: int,
    width: int,
    quantize: str = "none",
    calibration_dir: str | None = None,
    uint8_io: bool = False,
    with_attention: bool = False,
    verify_model: bool = True,
    min_psnr: float | None = None,
    verify_samples: int = 4,
    verify_dir: str | None = None,
    progress: bool = True,
    log=print,
    int8: Int8Options | None = None,
) -> ExportReport:
    """Converts a generator to `.tflite`, checks it, and writes it atomically.

    Args:
        generator: a built `Generator` (see `tf_deraindrop.load_generator`).
        output: path of the `.tflite` to write.
        height, width: the model's static input size (multiples of 4).
        quantize: one of `MODES`.
        calibration_dir: rainy photos; int8 calibrates on them (holding one
            in five out for verification), the other modes verify on them.
        uint8_io: uint8 pixels in and out instead of float32 in [0, 1].
        with_attention: also output the final attention map `A_N`.
        verify_model: compare with the Keras float generator and reject
            below `min_psnr` (default `DEFAULT_MIN_PSNR[quantize]`).
        verify_samples: verification samples.
        verify_dir: images to verify on (default: held-out calibration
            images, else synthetic scenes).
        log: where the summary lines go.
        int8: how `quantize="int8"` calibrates: the calibrator, the samples,
            channel equalization, quantization-aware fine-tuning
            (`tf_deraindrop.export.int8.options.Int8Options`; default its defaults).

    Returns:
        An `ExportReport`.

    Raises:
        ExportError: bad arguments or folders (nothing is written).
        VerificationFailed: the model was kept as `output + ".rejected"`.

    Example:
        >>> report = export_tflite(generator, "derain.tflite", 480, 720)  # doctest: +SKIP
    """
    from tf_deraindrop.export.int8.qat import load_qat_images
    from tf_deraindrop.utils.files import atomic_path, remove_stale_partials

    int8 = int8 or Int8Options()
    check_arguments(quantize, height, width, calibration_dir)
    int8.check(quantize)
    if verify_samples < 1:
        raise ExportError("--verify-samples must be at least 1")
    images = gather_images(
        quantize,
        calibration_dir,
        verify_model,
        verify_dir,
        height,
        width,
        int8.samples,
        verify_samples,
    )
    images.fine_tuning = load_qat_images(int8)
    workdir = os.path.dirname(os.path.abspath(output))
    with _writing(output):
        os.makedirs(workdir, exist_ok=True)
    remove_stale_partials(workdir)  # what an export killed there left
    with _writing(output), atomic_path(output) as partial:
        start = time.perf_counter()
        source, calibration = _source(generator, quantize, images, int8, progress)
        model = _convert_model(
            source, height, width, quantize, uint8_io, with_attention, calibration, output
        )
        seconds = time.perf_counter() - start
        with _writing(output), open(partial, "wb") as f:
            f.write(model)
        report = _report(output, partial, quantize, generator, seconds, images, verify_model)
        if verify_model:
            _verify(report, partial, output, generator, images, min_psnr, progress, log)
    for line in report.lines():
        log(line)
    return report


def _source(generator, quantize: str, images: ExportImages, int8: Int8Options, progress: bool):
    """What to convert, and the int8 representative dataset (`export.int8.pipeline`) or None.

    Adds the int8 calibration's summary to `images.summary`.
    """
    from tf_deraindrop.export.int8.pipeline import int8_calibration

    if quantize != "int8":
        return generator, None
    conversion = int8_calibration(
        generator,
        images.calibration_samples(),
        int8,
        qat_images=images.fine_tuning,
        progress=progress,
    )
    images.summary += conversion.summary
    return conversion.source, conversion.dataset


def _report(output, partial, quantize, generator, seconds, images: ExportImages, verify_model):
    """The report on the model written at `partial`, with the notes on its `stream` signature."""
    from tf_deraindrop.export.int8.stream import stream_notes

    report = ExportReport.measure(output, partial, quantize, generator.count_params(), seconds)
    report.calibration, report.notes = images.summary, images.notes
    report.notes += stream_notes(partial, generator, images.held_out if verify_model else ())
    return report


def _verify(report, partial, output, generator, images: ExportImages, min_psnr, progress, log):
    """Checks the model at `partial` against the Keras float generator; rejects it below the bar."""
    threshold = DEFAULT_MIN_PSNR[report.mode] if min_psnr is None else float(min_psnr)
    samples = images.verification_samples()
    report.verification = verify(
        partial, generator, samples, threshold, images.verify_source, progress
    )
    if not report.verification.passed:
        reject(report, partial, output, log)
