"""Export the generator to TFLite (LiteRT) for phones, dashcams and edge boxes.

    python -m export.tflite --weights gen.pkl --height 480 --width 720 \\
        --quantize int8 --calibration-dir rainy_photos/ -o derain_int8.tflite

The model has a static input `(1, H, W, 3)` and one signature, `derain`,
with the input `image` (RGB in [0, 1], or uint8 0..255 with `--io uint8`)
and the output `derained` (same type), plus `attention` (the final map
`A_N`) with `--with-attention`. Quantization modes:

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
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from export.convert import MODES, WEIGHT_BYTES, convert, write_saved_model
from export.errors import ExportError, VerificationFailed
from export.samples import fit_samples, list_images, read_images, synthetic_images
from export.verify import DEFAULT_MIN_PSNR, Verification, verify

if TYPE_CHECKING:
    from export.analysis import DelegateCoverage

__all__ = [
    "DEFAULT_MIN_PSNR",
    "MODES",
    "ExportError",
    "ExportReport",
    "VerificationFailed",
    "export_tflite",
    "main",
]


@dataclass
class ExportReport:
    """What `export_tflite` did."""

    path: str
    mode: str
    size: int
    weight_bytes: int
    ops: Counter
    xnnpack: DelegateCoverage
    seconds: float
    calibration: str = ""
    verification: Verification | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        return self.size / self.weight_bytes

    def lines(self) -> list[str]:
        ops = ", ".join(f"{name} {count}" for name, count in self.ops.most_common())
        lines = [
            f"Wrote {self.path}: {self.size / 1e6:.2f} MB, {self.size_ratio:.3f} x the weights' "
            f"own {self.weight_bytes / 1e6:.2f} MB ({WEIGHT_BYTES[self.mode]} B per weight, "
            f"mode {self.mode}); converted in {self.seconds:.1f} s",
            f"Ops ({sum(self.ops.values())}): {ops}",
            f"XNNPACK delegate: {self.xnnpack}",
        ]
        if self.calibration:
            lines.insert(0, self.calibration)
        if self.verification is not None:
            lines.append(f"Verification against the Keras float generator: {self.verification}")
        return lines + self.notes


def check_arguments(quantize: str, height: int, width: int, calibration_dir: str | None) -> None:
    """Raises `ExportError` for a mode, size or missing calibration folder that cannot work."""
    if quantize not in MODES:
        raise ExportError(f"--quantize {quantize}: choose one of {', '.join(MODES)}")
    for name, value in (("--height", height), ("--width", width)):
        if value < 4 or value % 4:
            raise ExportError(f"{name} {value}: must be a positive multiple of 4")
    if quantize == "int8" and not calibration_dir:
        raise ExportError("--quantize int8 needs --calibration-dir (a folder of rainy photos)")


@dataclass
class _Images:
    """The images an export calibrates and verifies on, and what to say about them."""

    calibration: list[np.ndarray] = field(default_factory=list)
    held_out: list[np.ndarray] = field(default_factory=list)
    summary: str = ""
    verify_source: str = ""
    notes: list[str] = field(default_factory=list)


def _gather_images(
    quantize, calibration_dir, verify_model, verify_dir, height, width, samples, verify_samples
) -> _Images:
    """Reads the calibration and verification images (a bad folder fails before slow work)."""
    found = _Images()
    if calibration_dir:
        images = read_images(list_images(calibration_dir), "calibration")
        if quantize == "int8":
            n_out = len(images) // 5 or (1 if len(images) > 1 else 0)
            found.calibration = images[: len(images) - n_out]
            found.held_out = images[len(images) - n_out :]
            found.summary = (
                f"Calibration: {samples} samples of {height}x{width} from "
                f"{len(found.calibration)} of the {len(images)} readable images in "
                f"{calibration_dir} ({n_out} held out for verification)"
            )
        else:
            found.held_out = images
    if not verify_model:
        return found
    if verify_dir:
        found.held_out = read_images(list_images(verify_dir, "--verify-dir"), "verification")
        found.verify_source = f"{len(found.held_out)} images from {verify_dir}"
    elif found.held_out:
        found.verify_source = f"{len(found.held_out)} held-out images from {calibration_dir}"
    else:
        found.held_out = synthetic_images(verify_samples, height, width)
        found.verify_source = "synthetic scenes"
        if quantize == "int8":
            found.notes.append(
                "note: the calibration folder has one image, so verification ran on "
                "synthetic scenes; add images for a held-out check"
            )
    return found


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

    Returns:
        An `ExportReport`.

    Raises:
        ExportError: bad arguments or folders (nothing is written).
        VerificationFailed: the model was kept as `output + ".rejected"`.

    Example:
        >>> report = export_tflite(generator, "derain.tflite", 480, 720)  # doctest: +SKIP
    """
    from export.analysis import op_counts, xnnpack_coverage
    from tf_deraindrop.weights import atomic_path, remove_stale_partials

    check_arguments(quantize, height, width, calibration_dir)
    if calibration_samples < 1 or verify_samples < 1:
        raise ExportError("--calibration-samples and --verify-samples must be at least 1")
    images = _gather_images(
        quantize,
        calibration_dir,
        verify_model,
        verify_dir,
        height,
        width,
        calibration_samples,
        verify_samples,
    )
    from export.qat import load_qat_images

    qat_images = load_qat_images(quantize, calibrator, qat_steps, qat_dir)

    workdir = os.path.dirname(os.path.abspath(output))
    os.makedirs(workdir, exist_ok=True)
    remove_stale_partials(workdir)  # what an export killed there left
    with atomic_path(output) as partial:
        start = time.perf_counter()
        calibration, source = None, generator
        if quantize == "int8":
            from export.calibrate import int8_calibration

            fitted = fit_samples(images.calibration, height, width, calibration_samples)
            source, calibration, how = int8_calibration(
                generator,
                height,
                width,
                fitted,
                calibrator,
                progress,
                qat_images=qat_images,
                qat_steps=qat_steps,
                qat_crop=qat_crop,
            )
            images.summary += how
        model = _convert_model(
            source, height, width, quantize, uint8_io, with_attention, calibration, output
        )
        seconds = time.perf_counter() - start
        with _writing(output), open(partial, "wb") as f:
            f.write(model)
        report = ExportReport(
            path=output,
            mode=quantize,
            size=len(model),
            weight_bytes=int(generator.count_params()) * WEIGHT_BYTES[quantize],
            ops=op_counts(partial),
            xnnpack=xnnpack_coverage(partial),
            seconds=seconds,
            calibration=images.summary,
            notes=images.notes,
        )
        if verify_model:
            threshold = DEFAULT_MIN_PSNR[quantize] if min_psnr is None else float(min_psnr)
            samples = fit_samples(images.held_out, height, width, verify_samples, seed=1)
            report.verification = verify(
                partial, generator, samples, threshold, images.verify_source, progress
            )
            if not report.verification.passed:
                _reject(report, partial, output, log)
    for line in report.lines():
        log(line)
    return report


def _reject(report: ExportReport, partial: str, output: str, log) -> None:
    """Keeps a model that failed verification as `<output>.rejected` and raises."""
    rejected = output + ".rejected"
    os.replace(partial, rejected)
    report.path = rejected
    for line in report.lines():
        log(line)
    raise VerificationFailed(
        f"verification failed: {report.verification}. The model is kept as "
        f"{rejected}; lower the bar with --min-psnr if this is expected."
    )


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
        choices=("tensorflow", "converter"),
        default="tensorflow",
        help="int8 ranges: measured in TensorFlow (fast, default) or by the TFLite converter",
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
    qat.add_argument("--qat-crop", type=int, help="side of the fine-tuning crops (128)")
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

        check_qat_arguments(args.quantize, args.calibrator, args.qat_steps, args.data_dir)
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
