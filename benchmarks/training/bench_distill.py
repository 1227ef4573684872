"""Distillation step time: teacher outputs on the fly (float32, bfloat16) or cached.

In one process, round-robin, on the same batch of rainy crops: one training
step of the student with cached teacher outputs, and with the teacher run on
the crops in float32 and in mixed_bfloat16, each also with the feature term
(`--feature-weight`: the teacher's and the student's feature maps, 1x1
adapters; its cost does not depend on the weight). Also the cost of filling the
cache (the teacher on one whole frame) and how far the bfloat16 teacher's
output is from the float32 one (PSNR). From these: how many steps it takes
for the cache to pay for itself.

    python benchmarks/training/bench_distill.py --teacher generator.keras --data-dir pairs/ \\
        --output benchmarks/results/distill_cpu.txt
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

from benchmarks.common import Report, tf_threads  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, metavar="PATH", help="the teacher (.keras)")
    parser.add_argument("--data-dir", required=True, help="rainy frames or Raindrop pairs")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--crop-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output")
    return parser.parse_args(argv)


def cached_batch(teacher, teachers: dict, batch: dict) -> tuple[dict, float]:
    """The batch with the float32 teacher's outputs; the bfloat16 teacher's PSNR against them."""
    from tf_deraindrop.metrics import psnr

    result = teacher.predict_on_batch(batch["rainy"])
    cached = dict(batch)
    cached["t_quarter"], cached["t_half"], cached["t_out"] = (
        np.asarray(o) for o in result["outputs"]
    )
    cached["t_attention"] = np.asarray(result["attention"][-1])
    bf16_out = np.asarray(
        teachers["mixed_bfloat16"].predict_on_batch(batch["rainy"])["outputs"][-1]
    )
    return cached, psnr(bf16_out, cached["t_out"])


def training_steps(args, teachers: dict, batch: dict, cached: dict) -> dict:
    """`{name: one training step}`: cached outputs, each teacher on the fly, with features."""
    import keras
    import tensorflow as tf

    from tf_deraindrop.models import LiteGenerator
    from tf_deraindrop.training.distill import Distiller, FeatureAdapters

    models = {}
    variants = [("cached", None, False), *((k, t, False) for k, t in teachers.items())]
    variants += [(f"{k} + features", t, True) for k, t in teachers.items()]
    for name, t, features in variants:
        keras.utils.set_random_seed(0)
        student = LiteGenerator.from_preset(args.preset)
        adapters = FeatureAdapters.between(student, t) if features else None
        model = Distiller(student, t, adapters=adapters)
        model.compile(keras.optimizers.Adam(1e-3), feature_weight=float(features))
        data = cached if t is None else {"rainy": batch["rainy"]}
        step = tf.function(model.train_step)
        tensors = {k: tf.constant(v) for k, v in data.items()}
        models[name] = lambda s=step, d=tensors: s(d)["total"].numpy()
    return models


def median_times(models: dict, runs: int) -> tuple[dict[str, float], float]:
    """Median seconds of each, after two warm-up calls, in round-robin runs; the load average.

    The 1-minute load average is read after the warm-up, as the timed runs start.
    """
    for run in models.values():  # warm-up (tracing)
        run()
        run()
    times = {k: [] for k in models}
    load = os.getloadavg()[0]
    for _ in range(runs):
        for key, run in models.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}, load


def report_lines(args, med: dict, frame_shape, frames: int, bf16_psnr: float, say) -> None:
    """The tables: step time by teacher outputs, the feature term, the cache's break-even."""
    h, w = frame_shape
    say("| teacher outputs | s per training step | x cached |")
    say("|---|---|---|")
    for key in ("cached", "float32", "mixed_bfloat16"):
        label = key if key == "cached" else f"on the fly, {key}"
        say(f"| {label} | {med[key]:.3f} | {med[key] / med['cached']:.1f}x |")
    say()
    say("With the feature term (teacher on the fly; the cache cannot hold its maps):")
    say()
    say("| teacher | s per step, without | with features | x without |")
    say("|---|---|---|---|")
    for key in ("float32", "mixed_bfloat16"):
        with_features = med[f"{key} + features"]
        say(f"| {key} | {med[key]:.3f} | {with_features:.3f} | {with_features / med[key]:.2f}x |")
    fill = med["teacher, one whole frame"]
    say()
    say(f"Filling the cache: {fill:.3f} s per {h} x {w} frame (float32 teacher).")
    data = os.path.basename(os.path.normpath(args.data_dir))
    for key in ("float32", "mixed_bfloat16"):
        saved = med[key] - med["cached"]
        if saved > 0:
            say(
                f"Against on the fly in {key}, the cache pays for itself after "
                f"{fill / saved:.1f} steps per frame ({fill / saved * frames:.0f} steps "
                f"for the {frames} frames of {data})."
            )
    say(f"bfloat16 teacher output vs float32: {bf16_psnr:.1f} dB PSNR on the batch.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import keras

    tf = tf_threads(args.threads)
    from tf_deraindrop.training.distill import (
        CropStream,
        FrameStore,
        find_examples,
        load_teacher,
        teacher_in,
    )

    report = Report()

    def say(text: str = "") -> None:
        report.say(text)

    teacher = load_teacher(args.teacher)
    with tempfile.TemporaryDirectory(prefix="bench_distill_frames_") as frames_dir:
        examples, paired = find_examples(args.data_dir, frames_dir, 1.0)
        frames = FrameStore()
        sizes = [frames.get(e.rainy).shape[:2] for e in examples[:64]]
        stream = CropStream(
            examples[:64], frames, args.crop_size, args.batch_size, False, None, sizes
        )
        batch = next(stream.batches(seed=0, steps=1))
        teachers = {"float32": teacher, "mixed_bfloat16": teacher_in(teacher, "mixed_bfloat16")}
        cached, bf16_psnr = cached_batch(teacher, teachers, batch)
        models = training_steps(args, teachers, batch, cached)
        frame = frames.get(examples[0].rainy)[None]
    whole = tf.function(lambda x: teacher(x, training=False)["outputs"][-1])
    models["teacher, one whole frame"] = lambda: whole(tf.constant(frame)).numpy()
    med, load = median_times(models, args.runs)
    say(
        f"Student {args.preset}, batch {args.batch_size} x {args.crop_size}^2 crops, "
        f"{args.threads} threads, median of {args.runs} round-robin runs; "
        f"load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    say()
    report_lines(args, med, frame.shape[1:3], len(examples), bf16_psnr, say)
    say(f"keras {keras.__version__}, tensorflow {tf.__version__}")
    report.save(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
