"""Flicker of a LiteGenerator on video: frame by frame against the ConvLSTM state carried.

A static scene filmed by a noisy camera: one real photo plus fresh Gaussian
sensor noise in every frame, so the content does not change between frames
and any change in the output is flicker. Measured over the frames after the
first: the mean absolute change between consecutive outputs (0..255 levels)
and attention maps, for the student run frame by frame (`derain`, all its
ConvLSTM steps from the zero state) and with the state carried from frame to
frame (`stream`, one step per frame); also how far the carried-state output
is from the frame-by-frame one (PSNR) and the time per frame of each.

Both in Keras and in TFLite: the student is exported (`python -m
tf_deraindrop.export.tflite`, int8 by default) at the photo's size, and its `derain`
signature (per frame) and `stream` signature (state carried,
`LiteDerainer.stream`) run alternately frame after frame in one process,
so that both see the same load.

    python benchmarks/video/bench_flicker.py --data DIR --student runs/lite/generator.keras \\
        --output benchmarks/results/flicker_cpu.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

from benchmarks.common import add_data_flag, tf_threads  # noqa: E402

PER_FRAME, CARRIED = "frame by frame", "state carried"


def flicker(pairs, index: int) -> float:
    """Mean absolute change between consecutive frames after the first (0..255 levels)."""
    values = [np.clip(p[index], 0, 1) * 255 for p in pairs]
    return float(np.mean([np.mean(np.abs(b - a)) for a, b in zip(values[1:], values[2:])]))


def run_keras(student, frames):
    """Per mode: `(output, attention)` per frame and seconds per frame (Keras, tf.function)."""
    import tensorflow as tf

    per_frame = tf.function(lambda x: student.derain(x))
    first = tf.function(lambda x: student.stream(x))
    later = tf.function(lambda x, h, c: student.stream(x, (h, c)))
    results = {PER_FRAME: [], CARRIED: []}
    seconds = {PER_FRAME: [], CARRIED: []}
    state = None
    for frame in frames:
        x = tf.constant(frame[None])
        start = time.perf_counter()
        out, attention = per_frame(x)
        results[PER_FRAME].append((out.numpy()[0], attention.numpy()[0]))
        seconds[PER_FRAME].append(time.perf_counter() - start)
        start = time.perf_counter()
        out, attention, state = first(x) if state is None else later(x, *state)
        results[CARRIED].append((out.numpy()[0], attention.numpy()[0]))
        seconds[CARRIED].append(time.perf_counter() - start)
    return results, seconds


def export_student(student, args, folder: str) -> tuple[str, list[str]]:
    """The student exported at the frames' size in `args.quantize` mode; its report lines.

    In the lines, `folder` reads `<tmp>` and the calibration folder its own name.
    """
    from tf_deraindrop.export.int8.options import Int8Options
    from tf_deraindrop.export.tflite import export_tflite

    path = os.path.join(folder, f"student_{args.quantize}.tflite")
    lines: list[str] = []
    calibration = args.calibration_dir if args.quantize == "int8" else None

    def log(line: str) -> None:
        line = line.replace(folder, "<tmp>")
        if calibration:
            line = line.replace(calibration, os.path.basename(os.path.normpath(calibration)))
        lines.append(line)

    export_tflite(
        student,
        path,
        args.height,
        args.width,
        quantize=args.quantize,
        calibration_dir=calibration,
        int8=Int8Options(samples=args.calibration_samples),
        with_attention=True,
        progress=False,
        log=log,
    )
    return path, lines


def run_tflite(path: str, frames, threads: int):
    """Per mode: `(output, attention)` per frame and seconds per frame (LiteDerainer).

    The `derain` signature and the `stream` signature run alternately on
    each frame, both through `LiteDerainer` (uint8 out).
    """
    from tf_deraindrop.inference.tflite import LiteDerainer

    derainer = LiteDerainer(path, threads=threads)
    results = {PER_FRAME: [], CARRIED: []}
    seconds = {PER_FRAME: [], CARRIED: []}
    for frame in frames:
        for mode, run in ((PER_FRAME, derainer.derain), (CARRIED, derainer.stream)):
            start = time.perf_counter()
            out, attention = run(frame, return_attention=True)
            seconds[mode].append(time.perf_counter() - start)
            results[mode].append((out.astype(np.float32) / 255.0, attention[..., None]))
    return results, seconds


def table(title: str, results: dict, seconds: dict, frames: int) -> list[str]:
    """Flicker and time per mode, and the carried state's distance from frame by frame."""
    from tf_deraindrop.metrics import psnr

    lines = [
        title,
        "",
        "| mode | output flicker (levels) | attention flicker (x255) | ms per frame |",
        "|---|---|---|---|",
    ]
    for mode, pairs in results.items():
        ms = 1e3 * float(np.median(seconds[mode][2:]))
        lines.append(f"| {mode} | {flicker(pairs, 0):.3f} | {flicker(pairs, 1):.3f} | {ms:.1f} |")
    ratio = np.median(seconds[PER_FRAME][2:]) / np.median(seconds[CARRIED][2:])
    gap = [psnr(a[0], b[0]) for a, b in zip(results[PER_FRAME][2:], results[CARRIED][2:])]
    return lines + [
        "",
        f"Time per frame (median of frames 3..{frames}): frame by frame / state carried = "
        f"{ratio:.2f}x",
        f"State carried vs frame by frame, output PSNR over frames 3..{frames}: "
        f"mean {np.mean(gap):.2f} dB, min {np.min(gap):.2f} dB",
    ]


def drift(keras: dict, lite: dict, frames: int) -> list[str]:
    """The TFLite outputs against Keras float32, frame by frame (does the carried state drift?)."""
    from tf_deraindrop.metrics import psnr

    lines = ["", "TFLite against Keras float32 (output PSNR, dB, clipped):"]
    for mode in (PER_FRAME, CARRIED):
        scores = [psnr(a[0], np.clip(b[0], 0, 1)) for a, b in zip(lite[mode], keras[mode])]
        lines.append(
            f"  {mode}: frame 1 {scores[0]:.2f}, frame 2 {scores[1]:.2f}, mean "
            f"{np.mean(scores):.2f}, min {np.min(scores):.2f}, frame {frames} {scores[-1]:.2f}"
        )
    return lines


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", required=True, help="a LiteGenerator .keras")
    add_data_flag(parser, required=False)
    parser.add_argument(
        "--photo", help="the scene (default: real_raindrops/case1.jpg under --data)"
    )
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--noise", type=float, default=2.0, help="noise sigma in 0..255 levels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--quantize",
        choices=("none", "float16", "dynamic", "int8", "skip"),
        default="int8",
        help="mode of the TFLite export (skip: Keras only)",
    )
    parser.add_argument(
        "--calibration-dir", help="rainy photos for int8 (default: real_raindrops under --data)"
    )
    parser.add_argument("--calibration-samples", type=int, default=4)
    parser.add_argument("--output")
    args = parser.parse_args(argv)
    real = os.path.join(args.data, "real_raindrops") if args.data else None
    args.photo = args.photo or (real and os.path.join(real, "case1.jpg"))
    args.calibration_dir = args.calibration_dir or real
    if args.photo is None or (args.quantize == "int8" and args.calibration_dir is None):
        parser.error("--data (or --photo, and --calibration-dir for int8) is needed")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    tf_threads(args.threads)
    from tf_deraindrop.inference.keras import pad_to_multiple
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.models import LiteGenerator
    from tf_deraindrop.utils.images import read_image

    student = load_generator(args.student)
    if not isinstance(student, LiteGenerator):
        raise SystemExit(f"--student {args.student}: not a LiteGenerator")
    photo = pad_to_multiple(read_image(args.photo))
    args.height, args.width = photo.shape[:2]
    rng = np.random.default_rng(0)
    frames = [
        np.clip(photo + rng.normal(0, args.noise / 255, photo.shape), 0, 1).astype(np.float32)
        for _ in range(args.frames)
    ]
    head = (
        f"{os.path.basename(args.photo)} ({args.height} x {args.width}), {args.frames} "
        f"frames, Gaussian noise sigma {args.noise:g}/255 per frame, student "
        f"{os.path.basename(args.student)} "
        f"({student.steps} ConvLSTM steps per frame from zero; 1 with the state carried), "
        f"{args.threads} threads"
    )
    keras, seconds = run_keras(student, frames)
    lines = [
        head,
        "",
        f"Input change between frames: {flicker([(f,) for f in frames], 0):.2f} levels",
    ]
    lines += [""] + table("Keras float32 (tf.function):", keras, seconds, args.frames)
    if args.quantize != "skip":
        with tempfile.TemporaryDirectory() as folder:
            path, export_lines = export_student(student, args, folder)
            lite, lite_seconds = run_tflite(path, frames, args.threads)
        title = (
            f"TFLite {args.quantize} (LiteDerainer, {args.threads} threads, XNNPACK; "
            "'derain' and 'stream' signatures alternately on each frame):"
        )
        lines += [""] + table(title, lite, lite_seconds, args.frames)
        lines += drift(keras, lite, args.frames)
        lines += ["", "Export:"] + [f"  {line}" for line in export_lines]
    print("\n".join(lines))
    if args.output:
        from tf_deraindrop.utils.files import write_text_atomically

        write_text_atomically(args.output, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
