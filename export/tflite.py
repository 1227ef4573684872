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
  `--calibration-dir`.

Every export is checked unless `--no-verify`: the `.tflite` runs in
`ai_edge_litert` on held-out images and its output is compared with the
Keras float generator's. Below the mode's PSNR threshold the export fails
(exit code 3) and the file is kept as `<output>.rejected`.

Exit codes: 0 exported, 2 bad input, 3 rejected by verification.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from export.analysis import DelegateCoverage

MODES = ("none", "float16", "dynamic", "int8")

#: Bytes per weight in each mode: the size a file should have, give or take 5%.
WEIGHT_BYTES = {"none": 4, "float16": 2, "dynamic": 1, "int8": 1}

#: Lowest PSNR (dB, outputs clipped to [0, 1], peak 1) against the Keras
#: float generator that an export may have on any verification sample.
#: Measured with benchmarks/bench_export.py on He-initialised random
#: generators (4 seeds at 64x96, 2 at 128x192, the worst seed at 480x720)
#: on the real photos: float32 >= 118 dB (uint8 I/O: rounding caps it near
#: 59), float16 62.7 to 76.7, dynamic 30.9 to 42.4, int8 26.1 to 37.7 (the
#: lowest at 480x720). Each threshold sits about 6 dB under the lowest value
#: (float16 and float32 well under, for uint8 I/O); a broken conversion (a
#: wrong channel order, a collapsed calibration range) scores under 15 dB.
DEFAULT_MIN_PSNR = {"none": 50.0, "float16": 45.0, "dynamic": 24.0, "int8": 20.0}


class ExportError(Exception):
    """A user error (bad file, flag or folder); the message says which."""


class VerificationFailed(ExportError):
    """The exported model is not close enough to the Keras float generator."""


@dataclass
class Verification:
    """PSNR (dB) and max absolute error per verification sample, and the verdict."""

    psnr: list[float]
    max_error: list[float]
    threshold: float
    source: str

    @property
    def passed(self) -> bool:
        return min(self.psnr) >= self.threshold

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"PSNR min {min(self.psnr):.2f} dB, mean {np.mean(self.psnr):.2f} dB, "
            f"max error {max(self.max_error):.3g} over {len(self.psnr)} samples "
            f"({self.source}); threshold {self.threshold:g} dB: {verdict}"
        )


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


# --------------------------------------------------------------------------- images


def list_images(directory: str, flag: str = "--calibration-dir") -> list[str]:
    """Image files directly in `directory`, sorted. Raises `ExportError` if none."""
    from tf_deraindrop.images import IMAGE_SUFFIXES

    if not os.path.isdir(directory):
        raise ExportError(f"{flag} {directory}: no such folder")
    try:
        names = sorted(os.listdir(directory))
    except OSError as err:
        raise ExportError(f"{flag} {directory}: cannot list the folder ({err})") from err
    paths = [
        os.path.join(directory, n)
        for n in names
        if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(directory, n))
    ]
    if not paths:
        raise ExportError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return paths


def read_images(paths: list[str], what: str) -> list[np.ndarray]:
    """Reads images, skipping unreadable ones with a warning; `ExportError` if none is readable."""
    from tf_deraindrop.images import ImageReadError, read_image

    images = []
    for path in paths:
        try:
            images.append(read_image(path))
        except ImageReadError as err:
            print(f"warning: skipping {err}", file=sys.stderr)
    if not images:
        raise ExportError(f"none of the {len(paths)} {what} images could be read")
    return images


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import tensorflow as tf

    out = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
    return np.clip(out.numpy(), 0.0, 1.0).astype(np.float32)


def fit_samples(
    images: list[np.ndarray], height: int, width: int, count: int, seed: int = 0
) -> list[np.ndarray]:
    """`count` float32 `(height, width, 3)` samples from `images`, cycling through them.

    The first sample of each image is the whole image resized to cover the
    size and centre-cropped (the frame as a model of that size sees it);
    later ones are random crops at a random scale between that and the
    native one (the tiles a smaller model sees on a large frame).
    """
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(count):
        image = images[k % len(images)]
        h, w = image.shape[:2]
        cover = max(height / h, width / w)
        scale = (
            cover
            if k < len(images)
            else math.exp(rng.uniform(math.log(cover), math.log(max(cover, 1.0))))
        )
        rh, rw = max(height, round(h * scale)), max(width, round(w * scale))
        resized = image if (rh, rw) == (h, w) else _resize(image, rh, rw)
        if k < len(images):
            y, x = (rh - height) // 2, (rw - width) // 2
        else:
            y, x = int(rng.integers(0, rh - height + 1)), int(rng.integers(0, rw - width + 1))
        samples.append(np.ascontiguousarray(resized[y : y + height, x : x + width]))
    return samples


def synthetic_images(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random scenes with bright blurred discs (drop-like), float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        image = np.zeros((height, width, 3), np.float32)
        for _ in range(4):  # low-frequency colour waves
            fy, fx = rng.uniform(0.5, 3.0, 2) * 2 * np.pi / np.array([height, width])
            phase = rng.uniform(0, 2 * np.pi)
            image += rng.uniform(0.05, 0.2, 3) * np.sin(fy * yy + fx * xx + phase)[..., None]
        image += rng.uniform(0.3, 0.6, 3)
        for _ in range(max(1, height * width // 400)):  # drops
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(1.5, max(2.0, min(height, width) / 8))
            disc = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            image += rng.uniform(0.1, 0.4) * disc[..., None]
        image += rng.normal(0, 0.01, image.shape).astype(np.float32)
        images.append(np.clip(image, 0.0, 1.0).astype(np.float32))
    return images


# --------------------------------------------------------------------------- graph and conversion


def float32_generator(generator):
    """The generator itself if float32, else a float32 copy (the reference for verification)."""
    if generator.dtype_policy.name == "float32":
        return generator
    copy = type(generator).from_config({**generator.get_config(), "dtype": "float32"})
    copy.build((None, None, None, 3))
    copy.set_weights(generator.get_weights())
    return copy


def write_saved_model(
    generator,
    directory: str,
    height: int,
    width: int,
    uint8_io: bool = False,
    with_attention: bool = False,
) -> None:
    """Writes a SavedModel with the `derain` signature (static shape `(1, H, W, 3)`).

    With `uint8_io` the signature takes and returns uint8, through two
    casts that `pixel_io` turns into the pixel scale after conversion (used
    by the float modes; int8 gets its uint8 ends from the converter).
    """
    import tensorflow as tf

    from export.graph import DeployGraph
    from tf_deraindrop.lite import ATTENTION, OUTPUT

    # A model with its own export function (LiteGenerator) converts as it is.
    deploy = getattr(generator, "deploy_graph", None)
    graph = deploy() if deploy is not None else DeployGraph(generator)
    spec = tf.TensorSpec((1, height, width, 3), tf.uint8 if uint8_io else tf.float32, name="image")

    class Derain(tf.Module):
        @tf.function(input_signature=[spec])
        def derain(self, image):
            # The casts are placeholders: `pixel_io` gives them the scale 1/255.
            derained, attention = graph(tf.cast(image, tf.float32) if uint8_io else image)
            if uint8_io:
                derained = tf.cast(derained, tf.uint8)
            outputs = {OUTPUT: derained}
            if with_attention:
                outputs[ATTENTION] = attention
            return outputs

    module = Derain()
    tf.saved_model.save(module, directory, signatures={"derain": module.derain})


def pixel_io(model: bytes) -> bytes:
    """Makes the uint8 `image` input and `derained` output carry pixels 0..255.

    Both ends get the quantization scale 1/255 and zero point 0, so that
    uint8 value `v` means `v / 255`:

    * float modes: the graph casts the uint8 input to float and the output
      back (placeholders written by `write_saved_model`). The input CAST
      becomes a DEQUANTIZE (`v / 255`) and the output CAST a QUANTIZE
      (`round(255 * O)`, saturating at 0 and 255, i.e. the clip to [0, 1]).
      XNNPACK takes both, where it takes no CAST; and a CAST at the start
      would split off the float16 weights' DEQUANTIZE ops as a partition
      of their own.
    * int8: the converter's uint8 interface keeps each end's calibrated
      scale; with the pixel scale instead, its QUANTIZE ops requantize
      between pixels and the int8 graph.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from tf_deraindrop.lite import INPUT, OUTPUT

    ops = schema.BuiltinOperator
    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    subgraph = tree.subgraphs[0]

    def code(op) -> int:
        c = tree.operatorCodes[op.opcodeIndex]
        return max(c.builtinCode, c.deprecatedBuiltinCode)

    def opcode_index(builtin: int) -> int:
        for index, c in enumerate(tree.operatorCodes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
                return index
        new = schema.OperatorCodeT()
        new.builtinCode, new.deprecatedBuiltinCode, new.version = builtin, builtin, 1
        tree.operatorCodes.append(new)
        return len(tree.operatorCodes) - 1

    (signature,) = tree.signatureDefs
    ends = [(m, "input") for m in signature.inputs if m.name.decode() == INPUT]
    ends += [(m, "output") for m in signature.outputs if m.name.decode() == OUTPUT]
    for end, side in ends:
        index = end.tensorIndex
        tensor = subgraph.tensors[index]
        if tensor.type != schema.TensorType.UINT8:
            raise RuntimeError(f"expected a uint8 tensor for {end.name.decode()}")
        quantization = schema.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint = [1.0 / 255.0], [0]
        tensor.quantization = quantization
        touching = [
            op
            for op in subgraph.operators
            if index in (list(op.inputs) if side == "input" else list(op.outputs))
        ]
        for op in touching:
            if code(op) == ops.CAST:
                op.opcodeIndex = opcode_index(ops.DEQUANTIZE if side == "input" else ops.QUANTIZE)
                op.builtinOptionsType, op.builtinOptions = 0, None
            elif code(op) != ops.QUANTIZE:
                raise RuntimeError(f"unexpected op {code(op)} at the {side} {end.name.decode()}")
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def convert(
    saved_model: str,
    mode: str,
    representative=None,
    uint8_io: bool = False,
) -> bytes:
    """Converts the SavedModel's `derain` signature to TFLite in the given mode."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["derain"])
    if mode != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if uint8_io:
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
    with warnings.catch_warnings():
        # The int8 calibrator uses the deprecated tf.lite.Interpreter inside.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        model = converter.convert()
    return pixel_io(model) if uint8_io else model


# --------------------------------------------------------------------------- verification


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images clipped to [0, 1], peak 1 (inf when equal)."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def verify(
    path: str,
    generator,
    samples: list[np.ndarray],
    threshold: float,
    source: str,
    progress: bool = True,
) -> Verification:
    """Runs the `.tflite` and the Keras float generator on `samples` and compares outputs."""
    from tqdm import tqdm

    from tf_deraindrop.images import to_uint8
    from tf_deraindrop.lite import LiteDerainer

    derainer = LiteDerainer(path)
    reference = float32_generator(generator)
    psnrs, errors = [], []
    for sample in tqdm(samples, desc="verify", unit="image", disable=not progress, leave=False):
        if derainer.input_dtype == np.uint8:
            sample = to_uint8(sample).astype(np.float32) / 255.0  # both see the same pixels
        out = derainer.run_tile(sample)
        expected = np.asarray(reference(sample[None], training=False)["outputs"][-1])[0]
        psnrs.append(psnr(out, expected))
        errors.append(float(np.max(np.abs(np.clip(out, 0, 1) - np.clip(expected, 0, 1)))))
    return Verification(psnrs, errors, threshold, source)


# --------------------------------------------------------------------------- the export


def _representative(samples: list[np.ndarray], progress: bool):
    """The converter's representative dataset: a callable yielding signature inputs."""
    from tqdm import tqdm

    def dataset():
        bar = tqdm(samples, desc="calibrate", unit="sample", disable=not progress, leave=False)
        for sample in bar:
            yield {"image": sample[None]}

    return dataset


def check_size(height: int, width: int) -> None:
    for name, value in (("--height", height), ("--width", width)):
        if value < 4 or value % 4:
            raise ExportError(f"{name} {value}: must be a positive multiple of 4")


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

    Returns:
        An `ExportReport`.

    Raises:
        ExportError: bad arguments or folders (nothing is written).
        VerificationFailed: the model was kept as `output + ".rejected"`.
    """
    from export.analysis import op_counts, xnnpack_coverage

    if quantize not in MODES:
        raise ExportError(f"--quantize {quantize}: choose one of {', '.join(MODES)}")
    check_size(height, width)
    if quantize == "int8" and not calibration_dir:
        raise ExportError("--quantize int8 needs --calibration-dir (a folder of rainy photos)")
    if calibration_samples < 1 or verify_samples < 1:
        raise ExportError("--calibration-samples and --verify-samples must be at least 1")

    # Images first: a bad folder fails before any slow work.
    calibration, held_out, notes = [], [], []
    summary = ""
    if calibration_dir:
        paths = list_images(calibration_dir)
        images = read_images(paths, "calibration")
        if quantize == "int8":
            n_out = len(images) // 5 or (1 if len(images) > 1 else 0)
            calibration = images[: len(images) - n_out]
            held_out = images[len(images) - n_out :]
            summary = (
                f"Calibration: {calibration_samples} samples of {height}x{width} from "
                f"{len(calibration)} of the {len(images)} readable images in {calibration_dir}"
                f" ({n_out} held out for verification)"
            )
        else:
            held_out = images
    verify_source = ""
    if verify_model:
        if verify_dir:
            held_out = read_images(list_images(verify_dir, "--verify-dir"), "verification")
            verify_source = f"{len(held_out)} images from {verify_dir}"
        elif held_out:
            verify_source = f"{len(held_out)} held-out images from {calibration_dir}"
        else:
            held_out = synthetic_images(verify_samples, height, width)
            verify_source = "synthetic scenes"
            if quantize == "int8":
                notes.append(
                    "note: the calibration folder has one image, so verification ran on "
                    "synthetic scenes; add images for a held-out check"
                )

    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    partial = os.path.join(directory, f".{os.path.basename(output)}.partial")
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="derain_export_") as saved_model:
            in_graph_uint8 = uint8_io and quantize != "int8"
            write_saved_model(generator, saved_model, height, width, in_graph_uint8, with_attention)
            representative = None
            if quantize == "int8":
                representative = _representative(
                    fit_samples(calibration, height, width, calibration_samples), progress
                )
            model = convert(saved_model, quantize, representative, uint8_io)
        seconds = time.perf_counter() - start
        with open(partial, "wb") as f:
            f.write(model)
        weights = int(generator.count_params())
        report = ExportReport(
            path=output,
            mode=quantize,
            size=len(model),
            weight_bytes=weights * WEIGHT_BYTES[quantize],
            ops=op_counts(partial),
            xnnpack=xnnpack_coverage(partial),
            seconds=seconds,
            calibration=summary,
            notes=notes,
        )
        if verify_model:
            threshold = DEFAULT_MIN_PSNR[quantize] if min_psnr is None else float(min_psnr)
            samples = fit_samples(held_out, height, width, verify_samples, seed=1)
            report.verification = verify(
                partial, generator, samples, threshold, verify_source, progress
            )
            if not report.verification.passed:
                rejected = output + ".rejected"
                os.replace(partial, rejected)
                report.path = rejected
                for line in report.lines():
                    log(line)
                raise VerificationFailed(
                    f"verification failed: {report.verification}. The model is kept as "
                    f"{rejected}; lower the bar with --min-psnr if this is expected."
                )
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    for line in report.lines():
        log(line)
    return report


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.tflite",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Verification thresholds (min PSNR, dB): "
            + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_MIN_PSNR.items())
            + ". Exit codes: 0 exported, 2 bad input, 3 rejected by verification."
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
        check_size(args.height, args.width)
        if args.quantize == "int8" and not args.calibration_dir:
            raise ExportError("--quantize int8 needs --calibration-dir (a folder of rainy photos)")
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
