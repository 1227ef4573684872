"""`deraindrop export`: the command line of `tf_deraindrop.export.tflite`."""

from __future__ import annotations

import argparse
import os
import sys

from tf_deraindrop.export.convert import MODES
from tf_deraindrop.export.errors import ExportError, VerificationFailed
from tf_deraindrop.export.int8.options import CALIBRATORS, EQUALIZE, Int8Options
from tf_deraindrop.export.samples import list_images
from tf_deraindrop.export.tflite import __doc__ as _DOC  # noqa: E402
from tf_deraindrop.export.tflite import check_arguments, export_tflite
from tf_deraindrop.export.verify import DEFAULT_MIN_PSNR

# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deraindrop export",
        description=_DOC.split("\n\n")[0],
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
    parser.add_argument(
        "--quantize",
        choices=MODES,
        default="none",
        help="int8: a quarter of the float32 file; faster than float32 only on CPUs with int8 "
        "dot products (AVX512_VNNI, AVX-VNNI, AMX), as the 'Fast paths' line says (default: none)",
    )
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
        int8 = Int8Options(
            calibrator=args.calibrator,
            samples=args.calibration_samples,
            equalize=args.equalize,
            qat_steps=args.qat_steps,
            qat_dir=args.data_dir,
            qat_crop=args.qat_crop,
            qat_range_lr=args.qat_range_lr,
        )
        int8.check(args.quantize)
        from tf_deraindrop.export.int8.qat import list_data_dir

        if args.data_dir:
            list_data_dir(args.data_dir)
        if not os.path.isfile(args.weights):
            raise ExportError(f"--weights {args.weights}: no such file")
        if args.calibration_dir:
            list_images(args.calibration_dir)
        if args.verify_dir:
            list_images(args.verify_dir, "--verify-dir")
        from tf_deraindrop.utils.files import FolderWriteError, ensure_writable_folder

        try:  # before the model loads
            ensure_writable_folder(os.path.dirname(os.path.abspath(args.output)), "--output in ")
        except FolderWriteError as err:
            raise ExportError(str(err)) from err
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from tf_deraindrop.inference.loading import WeightsError, load_generator_weights

        try:
            generator = load_generator_weights(args.weights)
        except WeightsError as err:
            raise ExportError(f"--weights {args.weights}: {err}") from err
        print(f"Generator from {args.weights}: {generator.count_params():,} parameters")
        from tf_deraindrop.inference.cpu import fast_paths

        print(fast_paths(), flush=True)  # oneDNN (calibration, QAT), int8 with VNNI or not
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
            verify_samples=args.verify_samples,
            verify_dir=args.verify_dir,
            progress=not args.quiet,
            int8=int8,
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
