"""Flicker of a LiteGenerator on video: frame by frame against the ConvLSTM state carried.

A static scene filmed by a noisy camera: one real photo plus fresh Gaussian
sensor noise in every frame, so the content does not change between frames
and any change in the output is flicker. Measured over the frames after the
first: the mean absolute change between consecutive outputs (0..255 levels)
and attention maps, for the student run frame by frame (`derain`, all its
ConvLSTM steps from the zero state) and with the state carried from frame to
frame (`stream`, one step per frame); also how far the carried-state output
is from the frame-by-frame one (PSNR) and the time per frame of each.

    python benchmarks/bench_flicker.py --student runs/lite/generator.keras \\
        --output benchmarks/results/flicker_cpu.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", required=True, help="a LiteGenerator .keras")
    parser.add_argument(
        "--photo", default=os.path.join(ROOT, "..", "shared", "data", "real_raindrops", "case1.jpg")
    )
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--noise", type=float, default=2.0, help="noise sigma in 0..255 levels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output")
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tf_deraindrop.images import read_image
    from tf_deraindrop.inference import load_generator, pad_to_multiple
    from tf_deraindrop.metrics import psnr
    from tf_deraindrop.models import LiteGenerator

    student = load_generator(args.student)
    if not isinstance(student, LiteGenerator):
        raise SystemExit(f"--student {args.student}: not a LiteGenerator")
    photo = pad_to_multiple(read_image(args.photo))
    rng = np.random.default_rng(0)
    frames = [
        np.clip(photo + rng.normal(0, args.noise / 255, photo.shape), 0, 1).astype(np.float32)
        for _ in range(args.frames)
    ]
    per_frame = tf.function(lambda x: student.derain(x))
    first = tf.function(lambda x: student.stream(x))
    later = tf.function(lambda x, h, c: student.stream(x, (h, c)))

    results = {"frame by frame": [], "state carried": []}
    seconds = {"frame by frame": [], "state carried": []}
    state = None
    for frame in frames:
        x = tf.constant(frame[None])
        start = time.perf_counter()
        out, attention = per_frame(x)
        results["frame by frame"].append((out.numpy()[0], attention.numpy()[0]))
        seconds["frame by frame"].append(time.perf_counter() - start)
        start = time.perf_counter()
        out, attention, state = first(x) if state is None else later(x, *state)
        results["state carried"].append((out.numpy()[0], attention.numpy()[0]))
        seconds["state carried"].append(time.perf_counter() - start)

    def flicker(pairs, index):
        values = [np.clip(p[index], 0, 1) * 255 for p in pairs]
        return float(np.mean([np.mean(np.abs(b - a)) for a, b in zip(values[1:], values[2:])]))

    lines = [
        f"{os.path.basename(args.photo)} ({photo.shape[0]} x {photo.shape[1]}), {args.frames} "
        f"frames, Gaussian noise sigma {args.noise:g}/255 per frame, student {args.student} "
        f"({student.steps} ConvLSTM steps per frame from zero; 1 with the state carried), "
        f"{args.threads} threads",
        "",
        f"Input change between frames: {flicker([(f, f) for f in frames], 0):.2f} levels",
        "",
        "| mode | output flicker (levels) | attention flicker (x255) | ms per frame |",
        "|---|---|---|---|",
    ]
    for mode, pairs in results.items():
        ms = 1e3 * float(np.median(seconds[mode][2:]))
        lines.append(f"| {mode} | {flicker(pairs, 0):.3f} | {flicker(pairs, 1):.3f} | {ms:.0f} |")
    gap = [
        psnr(a[0], b[0])
        for a, b in zip(results["frame by frame"][2:], results["state carried"][2:])
    ]
    lines += [
        "",
        f"State carried vs frame by frame, output PSNR over frames 3..{args.frames}: "
        f"mean {np.mean(gap):.2f} dB, min {np.min(gap):.2f} dB",
    ]
    print("\n".join(lines))
    if args.output:
        from tf_deraindrop.weights import write_text_atomically

        write_text_atomically(args.output, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
