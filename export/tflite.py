"""Export the generator to TFLite (LiteRT) for phones, dashcams and edge boxes.

    python -m export.tflite --weights gen.pkl --height 480 --width 720 \\
        --quantize int8 --calibration-dir rainy_photos/ -o derain_int8.tflite

The model has a static input `(1, H, W, 3)` and one signature, `derain`,
with the input `image` (RGB in [0, 1], or uint8 0..255 with `--io uint8`)
and the output `derained` (same type), plus `attention` (the final map
`A_N`) with `--with-attention`. A `LiteGenerator` also gets a second
signature, `stream`, for video: the frame and the ConvLSTM state carried
from the frame before in, the result and the next state out (`export.stream`,
`tf_deraindrop.lite.LiteDerainer.stream`). Quantization modes:

* `none`: float32.
* `float16`: float16 weights (half the file); computes in float32 on CPU,
  in float16 on a phone GPU delegate.
* `dynamic`: int8 weights, activations quantized on the fly.
* `int8`: int8 weights and activations, calibrated on rainy photos from
  `--calibration-dir`. The activation ranges are measured in TensorFlow
  (`export.calibrate`: bfloat16 where the CPU has it, over 10x faster than
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

import argparse
import contextlib
import os
import sys
import tempfile
import time

from export.convert import MODES, WEIGHT_BYTES, convert, write_saved_model
from export.errors import ExportError, VerificationFailed
from export.int8 import CALIBRATORS, EQUALIZE
from export.report import ExportReport, reject
from export.samples import ExportImages, gather_images, list_images
from export.verify import DEFAULT_MIN_PSNR, verify

__all__ = [
    "DEFAULT_MIN_PSNR",
    "MODES",
    "ExportError",
    "ExportReport",
    "VerificationFailed",
    "WEIGHT_BYTES",
    "export_tflite",
    "main",
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
    calibration_samples: int = 16,
    verify_samples: int = 4,
    verify_dir: str | None = None,
    progress: bool = True,
    log=print,
    calibrator: str = "tensorflow",
    qat_steps: int = 0,
    qat_dir: str | None = None,
    qat_crop: int | None = None,
    equalize: str = "auto",
    qat_range_lr: float = 0.0,
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
        calibration_samples: int8 calibration samples (crops/resizes).
        verify_samples: verification samples.
        verify_dir: images to verify on (default: held-out calibration
            images, else synthetic scenes).
        log: where the summary lines go.
        calibrator: int8 ranges from `"tensorflow"` (fast, `export.calibrate`)
            or the TFLite `"converter"`'s calibrator.
        qat_steps: int8 only: fine-tune with int8 simulated for this many
            steps on crops of the rainy photos in `qat_dir`, against the
            float generator's own outputs (`export.qat`).
        qat_crop: side of the fine-tuning crops (`export.qat.DEFAULT_CROP`).
        qat_range_lr: train the activations' int8 ranges too, at this rate
            (0: they stay calibrated; `export.qat.fine_tune`'s
            `range_learning_rate`).
        equalize: int8 with `calibrator="tensorflow"`: channel equalization
            `"auto"` (where int8 simulated on the calibration samples says it
            helps), `"on"` or `"off"` (`export.int8.EQUALIZE`).

    Returns:
        An `ExportReport`.

    Raises:
        ExportError: bad arguments or folders (nothing is written).
        VerificationFailed: the model was kept as `output + ".rejected"`.

    Example:
        >>> report = export_tflite(generator, "derain.tflite", 480, 720)  # doctest: +SKIP
    """
    from export.int8 import check_equalize
    from export.qat import load_qat_images
    from tf_deraindrop.weights import atomic_path, remove_stale_partials

    check_arguments(quantize, height, width, calibration_dir)
    check_equalize(quantize, calibrator, equalize)
    if calibration_samples < 1 or verify_samples < 1:
        raise ExportError("--calibration-samples and --verify-samples must be at least 1")
    images = gather_images(
        quantize,
        calibration_dir,
        verify_model,
        verify_dir,
        height,
        width,
        calibration_samples,
        verify_samples,
    )
    images.fine_tuning = load_qat_images(quantize, calibrator, qat_steps, qat_dir, qat_range_lr)
    workdir = os.path.dirname(os.path.abspath(output))
    os.makedirs(workdir, exist_ok=True)
    remove_stale_partials(workdir)  # what an export killed there left
    with atomic_path(output) as partial:
        start = time.perf_counter()
        source, calibration = _source(
            generator,
            quantize,
            images,
            calibrator,
            progress,
            qat_steps=qat_steps,
            qat_crop=qat_crop,
            qat_range_lr=qat_range_lr,
            equalize=equalize,
        )
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


def _source(
    generator,
    quantize,
    images: ExportImages,
    calibrator,
    progress,
    *,
    qat_steps,
    qat_crop,
    qat_range_lr,
    equalize,
):
    """What to convert, and the int8 representative dataset (`export.int8`) or None.

    Adds the int8 calibration's summary to `images.summary`.
    """
    from export.int8 import int8_calibration

    if quantize != "int8":
        return generator, None
    source, calibration, how = int8_calibration(
        generator,
        images.calibration_samples(),
        calibrator,
        progress=progress,
        qat_images=images.fine_tuning,
        qat_steps=qat_steps,
        qat_crop=qat_crop,
        qat_range_lr=qat_range_lr,
        equalize=equalize,
    )
    images.summary += how
    return source, calibration


def _report(output, partial, quantize, generator, seconds, images: ExportImages, verify_model):
    """The report on the model written at `partial`, with the notes on its `stream` signature."""
    from export.stream import stream_notes

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


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.tflite",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Verification thresholds (min PSNR, dB): "
            + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_MIN_PSNR.items())
            + ". Exit codes: 0 exported, 2 bad input or an output that cannot be written, "
            "3 rejected by verification."
        ),
    )
    parser.add_argument("--weights", required=True, help=".keras generator or the authors' gen.pkl")
    parser.add_argument("--height", type=int, required=True, help="input height (multiple of 4)")
    parser.add_argument("--width", type=int, required=True, help="input width (multiple of 4)")
    parser.add_argument("--quantize", choices=MODES, default="none")
    parser.add_argument("--calibration-dir", help="rainy photos (int8: required)")
    parser.add_argument(
        "--calibration-samples", type=int, default=16, help="int8 calibration samples (16)"
    )
    parser.add_argument(
        "--calibrator",
        choices=CALIBRATORS,
        default="tensorflow",
        help="int8 ranges: measured in TensorFlow (fast, default) or by the TFLite converter",
    )
    parser.add_argument(
        "--equalize",
        choices=tuple(EQUALIZE),
        default="auto",
        help="int8, --calibrator tensorflow: even out each tensor's channel ranges first (the "
        "float model is unchanged); auto keeps it where int8 simulated on the calibration "
        "samples is clearly closer to float",
    )
    qat = parser.add_argument_group("quantization-aware fine-tuning (int8)")
    qat.add_argument(
        "--qat-steps",
        type=int,
        default=0,
        help="fine-tune with int8 simulated for N steps before converting, against the float "
        "model's own outputs (no clean images needed; 0: calibrate only)",
    )
    qat.add_argument("--data-dir", help="rainy photos to fine-tune on (with --qat-steps)")
    qat.add_argument("--qat-crop", type=int, help="side of the fine-tuning crops (256)")
    qat.add_argument(
        "--qat-range-lr",
        type=float,
        default=0.0,
        help="also train the activations' int8 ranges at this rate (try 3e-3 where calibration "
        "is far from float: +0.7 dB on random weights, -0.5 dB on a trained generator; "
        "default 0: the calibrated ranges stay)",
    )
    parser.add_argument(
        "--io",
        choices=("float32", "uint8"),
        default="float32",
        help="uint8: input and output are uint8 pixels 0..255 (camera pipelines)",
    )
    parser.add_argument(
        "--with-attention", action="store_true", help="also output the attention map A_N"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the verification")
    parser.add_argument("--min-psnr", type=float, help="verification threshold in dB")
    parser.add_argument("--verify-dir", help="images to verify on (default: held-out ones)")
    parser.add_argument("--verify-samples", type=int, default=4, help="verification samples (4)")
    parser.add_argument("-o", "--output", required=True, help="the .tflite to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args.quantize, args.height, args.width, args.calibration_dir)
        from export.qat import check_qat_arguments, list_data_dir

        check_qat_arguments(
            args.quantize, args.calibrator, args.qat_steps, args.data_dir, args.qat_range_lr
        )
        from export.int8 import check_equalize

        check_equalize(args.quantize, args.calibrator, args.equalize)
        if args.data_dir:
            list_data_dir(args.data_dir)
        if not os.path.isfile(args.weights):
            raise ExportError(f"--weights {args.weights}: no such file")
        if args.calibration_dir:
            list_images(args.calibration_dir)
        if args.verify_dir:
            list_images(args.verify_dir, "--verify-dir")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from tf_deraindrop.weights import WeightsError, load_generator_weights

        try:
            generator = load_generator_weights(args.weights)
        except WeightsError as err:
            raise ExportError(f"--weights {args.weights}: {err}") from err
        print(f"Generator from {args.weights}: {generator.count_params():,} parameters")
        export_tflite(
            generator,
            args.output,
            args.height,
            args.width,
            quantize=args.quantize,
            calibration_dir=args.calibration_dir,
            uint8_io=args.io == "uint8",
            with_attention=args.with_attention,
            verify_model=not args.no_verify,
            min_psnr=args.min_psnr,
            calibration_samples=args.calibration_samples,
            verify_samples=args.verify_samples,
            verify_dir=args.verify_dir,
            progress=not args.quiet,
            calibrator=args.calibrator,
            qat_steps=args.qat_steps,
            qat_dir=args.data_dir,
            qat_crop=args.qat_crop,
            qat_range_lr=args.qat_range_lr,
            equalize=args.equalize,
        )
    except VerificationFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
