"""LiteGenerator sizes against the full generator: GFLOP, int8 TFLite and Keras speed, file size.

For each LiteGenerator configuration (the presets, or `--configs`) and for
the full `Generator`, in one run at one frame size (480 x 720 by default):

* GFLOP per frame (2 x multiply-adds) and parameters;
* the int8 and float32 `.tflite` from `tf_deraindrop.export.tflite` (the path users take),
  their size, XNNPACK coverage and milliseconds per frame at `--threads`;
* Keras float32 (TensorFlow, `--threads` intra-op threads) milliseconds per frame;
* int8 against float: PSNR of the int8 model's output against the Keras
  float model's on a held-out real photo (meaningful for trained weights:
  `--student`, `--teacher`; random weights only show the plumbing).

Engines are timed round-robin (one frame each per round, after a warm-up),
so that load from other processes falls on all of them alike; the table
gives medians and the ratios to the full generator in the same run.

The full generator's int8 export calibrates on `--full-calibration-samples`
samples (2 by default: calibration at 480 x 720 takes minutes, and the
calibrated ranges only matter for its accuracy, not its speed).

    python benchmarks/inference/bench_lite.py --data DIR            # presets, random weights
    python benchmarks/inference/bench_lite.py --data DIR --student runs/lite/generator.keras \\
        --teacher teacher/generator.keras                           # trained weights too
    python benchmarks/inference/bench_lite.py --data DIR --quick    # 64 x 96, two configs

`--data DIR` holds real_raindrops/ (calibration, the held-out photo) and
raindrop_pairs/ (the fidelity table); `--calibration-dir` and `--pairs-dir`
name them one by one instead.
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

from benchmarks.common import Report, add_data_flag, generator_macs, tf_threads  # noqa: E402

#: Configurations beyond the presets: `name=preset:key=value+key=value`.
EXTRA_CONFIGS = ("base-full8=base:full_filters=8", "base-wide=base:width=64+half_filters=32")

#: Goals of issue 11 at 480 x 720, 2 threads.
GOAL_INT8_MS = 100.0
GOAL_INT8_SPEEDUP = 8.0
GOAL_FILE_MB = 2.0
GOAL_KERAS_SPEEDUP = 20.0


def parse_config(text: str) -> tuple[str, dict]:
    """`name=preset:key=value+...` (or a preset's name) as `(name, LiteGenerator kwargs)`.

    A value of `dilations` is written `2/4/8`.
    """
    from tf_deraindrop.models.lite_generator import PRESETS

    name, _, spec = text.partition("=")
    preset, _, overrides = (spec or name).partition(":")
    if preset not in PRESETS:
        raise SystemExit(f"--configs {text}: unknown preset {preset!r} ({', '.join(PRESETS)})")
    kwargs = dict(PRESETS[preset])
    for item in filter(None, overrides.split("+")):
        key, _, value = item.partition("=")
        kwargs[key] = tuple(int(v) for v in value.split("/")) if key == "dilations" else int(value)
    return name, kwargs


def held_out_photo(h: int, w: int, folder: str) -> np.ndarray:
    from tf_deraindrop.export.samples import fit_samples, list_images, read_images

    images = read_images(list_images(folder), "test")
    return fit_samples([images[-1]], h, w, 1)[0]


def export(model, path, h, w, mode, folder, samples):
    from tf_deraindrop.export.int8.options import Int8Options
    from tf_deraindrop.export.tflite import export_tflite

    return export_tflite(
        model,
        path,
        h,
        w,
        quantize=mode,
        calibration_dir=folder if mode == "int8" else None,
        verify_model=False,
        int8=Int8Options(samples=samples),
        progress=False,
        log=lambda _: None,
    )


def prepare(label, model, macs, args, folder, workdir, photo, calibration_samples):
    """Exports one model (int8 and float32) and returns its row with the engines to time."""
    import tensorflow as tf

    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.metrics import psnr

    h, w = args.height, args.width
    start = time.perf_counter()
    row = {"name": label, "gflop": 2 * macs / 1e9, "params": model.count_params()}
    engines = {}
    forward = tf.function(lambda x: model(x, training=False)["outputs"][-1])
    frame = tf.constant(photo[None])
    expected = forward(frame).numpy()[0]
    engines["keras"] = lambda: forward(frame).numpy()
    for mode in ("int8", "none"):
        path = os.path.join(workdir, f"{label}_{mode}.tflite")
        report = export(model, path, h, w, mode, folder, calibration_samples)
        derainer = LiteDerainer(path, threads=args.threads)
        out = derainer.run_tile(photo)
        row[f"{mode}_mb"] = report.size / 1e6
        row[f"{mode}_psnr"] = psnr(out, expected)
        row[f"{mode}_xnnpack"] = (
            f"{report.xnnpack.taken}/{report.xnnpack.total} ({report.xnnpack.partitions}p)"
        )
        engines[mode] = lambda d=derainer: d.run_tile(photo)
    print(f"  {label}: exported in {time.perf_counter() - start:.0f} s", flush=True)
    return row, engines


def time_round_robin(engines: dict, runs: int, warmup: int) -> dict:
    """Median seconds of each engine, one run each per round."""
    for run in engines.values():
        for _ in range(warmup):
            run()
    times = {key: [] for key in engines}
    for _ in range(runs):
        for key, run in engines.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    return {key: float(np.median(t)) for key, t in times.items()}


def _outputs(model, image: np.ndarray) -> np.ndarray:
    """The model's derained float output on one image of any size (reflect-padded to 4)."""
    from tf_deraindrop.inference.keras import pad_to_multiple

    h, w = image.shape[:2]
    result = model.predict_on_batch(pad_to_multiple(image)[None])
    return np.asarray(result["outputs"][-1])[0, :h, :w]


def fidelity(students: dict, teacher, photos: str, pair_dirs: list[str], say) -> None:
    """Student against teacher: PSNR on real photos, Y-PSNR of both against ground truths."""
    from tf_deraindrop.data import find_pairs
    from tf_deraindrop.export.samples import list_images, read_images
    from tf_deraindrop.metrics import psnr, psnr_y
    from tf_deraindrop.utils.images import read_image, to_uint8

    images = read_images(list_images(photos), "real")
    teacher_out = [_outputs(teacher, image) for image in images]
    pairs = {d: find_pairs(d) for d in pair_dirs}
    truth = {
        d: [(read_image(p.rainy), to_uint8(read_image(p.clean))) for p in ps]
        for d, ps in pairs.items()
    }
    teacher_y = {
        d: float(np.mean([psnr_y(to_uint8(_outputs(teacher, r)), c) for r, c in ts]))
        for d, ts in truth.items()
    }
    rainy_y = {
        d: float(np.mean([psnr_y(to_uint8(r), c) for r, c in ts])) for d, ts in truth.items()
    }
    say()
    say(
        f"Fidelity: student vs teacher PSNR (RGB, clipped, whole frames) on the {len(images)} "
        f"real photos of {os.path.basename(photos)}; Y-PSNR (published protocol) against the "
        "ground truth, "
        "mean over each pair folder"
    )
    head = "| student | PSNR vs teacher, real photos (dB) |"
    for d in pair_dirs:
        name = os.path.basename(os.path.normpath(d))
        head += f" Y-PSNR {name} ({len(pairs[d])}): student / teacher / rainy |"
    say(head)
    say("|" + "---|" * (head.count("|") - 1))
    for name, student in students.items():
        real = [psnr(_outputs(student, im), t) for im, t in zip(images, teacher_out)]
        row = f"| {name} | " + ", ".join(f"{v:.2f}" for v in real) + f" (min {min(real):.2f}) |"
        for d in pair_dirs:
            ys = [psnr_y(to_uint8(_outputs(student, r)), c) for r, c in truth[d]]
            row += (
                f" {np.mean(ys):.2f} / {teacher_y[d]:.2f} / {rainy_y[d]:.2f}"
                f" (student - teacher {np.mean(ys) - teacher_y[d]:+.2f}) |"
            )
        say(row)


def speed(args, students: dict, teacher, photo: np.ndarray, say) -> None:
    """Exports and times every configuration, the students and the full generator; the table."""
    from tf_deraindrop.models import Generator, LiteGenerator

    h, w = args.height, args.width
    folder = os.path.normpath(os.path.abspath(args.calibration_dir))
    rows, engines = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_lite_") as workdir:
        models = []
        for text in filter(None, args.configs.split(",")):
            name, kwargs = parse_config(text)
            model = LiteGenerator(**kwargs)
            model.build((None, None, None, 3))
            models.append((name, model, args.calibration_samples))
        for name, model in students.items():
            models.append((name, model, args.calibration_samples))
        if not args.no_full:
            if teacher is not None:
                full = teacher
            else:
                full = Generator()
                full.build((None, None, None, 3))
            models.append(("full Generator", full, args.full_calibration_samples))
        for name, model, samples in models:
            if isinstance(model, LiteGenerator):
                macs = model.multiply_adds(h, w)
            else:
                macs = generator_macs(h, w)
            row, its = prepare(name, model, macs, args, folder, workdir, photo, samples)
            rows.append(row)
            for key, run in its.items():
                engines[(name, key)] = run
        load_before = os.getloadavg()[0]
        medians = time_round_robin(engines, args.runs, args.warmup)
        load_after = os.getloadavg()[0]
    for row in rows:
        for key in ("keras", "int8", "none"):
            row[f"{key}_ms"] = 1e3 * medians[(row["name"], key)]

    full = next((r for r in rows if r["name"] == "full Generator"), None)
    say(
        f"{h} x {w}, {args.threads} threads, median of {args.runs} round-robin runs "
        f"(after {args.warmup} warm-up); int8 calibrated on {args.calibration_samples} samples "
        f"(full generator: {args.full_calibration_samples}) from {os.path.basename(folder)}, "
        "last photo held out"
    )
    say(
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after timing "
        f"on {os.cpu_count()} CPUs (other processes share them: compare ratios, not times)"
    )
    say()
    head = (
        "| model | GFLOP | params | int8 ms | int8 x full | int8 MB | f32 TFLite ms "
        "| Keras f32 ms | Keras x full | int8 vs float dB | XNNPACK int8 |"
    )
    say(head)
    say("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        int8_x = full["int8_ms"] / r["int8_ms"] if full else float("nan")
        keras_x = full["keras_ms"] / r["keras_ms"] if full else float("nan")
        say(
            f"| {r['name']} | {r['gflop']:.2f} | {r['params']:,} | {r['int8_ms']:.1f} "
            f"| {int8_x:.1f}x | {r['int8_mb']:.3f} | {r['none_ms']:.1f} | {r['keras_ms']:.1f} "
            f"| {keras_x:.1f}x | {r['int8_psnr']:.1f} | {r['int8_xnnpack']} |"
        )
    if full and (h, w) == (480, 720):
        say()
        say(
            f"Goals: int8 <= {GOAL_INT8_MS:g} ms, >= {GOAL_INT8_SPEEDUP:g}x the full int8, "
            f"file <= {GOAL_FILE_MB:g} MB, Keras float32 >= {GOAL_KERAS_SPEEDUP:g}x the full"
        )
        for r in rows:
            if r is full:
                continue
            met = (
                r["int8_ms"] <= GOAL_INT8_MS
                and full["int8_ms"] / r["int8_ms"] >= GOAL_INT8_SPEEDUP
                and r["int8_mb"] <= GOAL_FILE_MB
                and full["keras_ms"] / r["keras_ms"] >= GOAL_KERAS_SPEEDUP
            )
            say(f"  {r['name']}: {'all speed and size goals met' if met else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    from tf_deraindrop.models.lite_generator import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7, help="timed rounds (7)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--configs",
        default=",".join([*PRESETS, *EXTRA_CONFIGS]),
        help="comma-separated presets or name=preset:key=value+key=value overrides",
    )
    parser.add_argument("--student", action="append", default=[], help="a trained student .keras")
    parser.add_argument("--teacher", help="the full generator's weights (default: random)")
    add_data_flag(parser, required=False)
    parser.add_argument(
        "--calibration-dir", help="rainy photos (default: real_raindrops under --data)"
    )
    parser.add_argument("--calibration-samples", type=int, default=4, help="students (4)")
    parser.add_argument("--full-calibration-samples", type=int, default=2, help="generator (2)")
    parser.add_argument("--no-full", action="store_true", help="skip the full generator")
    parser.add_argument(
        "--pairs-dir",
        action="append",
        default=[],
        help="Raindrop-layout pairs for the fidelity table (with --student and --teacher; "
        "default: raindrop_pairs under --data)",
    )
    parser.add_argument("--no-speed", action="store_true", help="fidelity table only")
    parser.add_argument("--quick", action="store_true", help="64 x 96, nano and small, 3 runs")
    parser.add_argument("--output", help="also write the report here (benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.quick:
        args.height, args.width, args.runs, args.warmup = 64, 96, 3, 1
        args.configs = "nano,small"
    if args.calibration_dir is None:
        if args.data is None:
            parser.error("--data or --calibration-dir: the rainy photos are needed")
        args.calibration_dir = os.path.join(args.data, "real_raindrops")

    tf = tf_threads(args.threads)
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.models.dtype import float32_generator

    h, w = args.height, args.width
    folder = os.path.normpath(os.path.abspath(args.calibration_dir))
    photo = held_out_photo(h, w, folder)
    report = Report()

    def say(text: str = "") -> None:
        report.say(text)

    students = {
        f"trained {os.path.basename(p)}": float32_generator(load_generator(p)) for p in args.student
    }
    teacher = float32_generator(load_generator(args.teacher)) if args.teacher else None
    if not args.no_speed:
        speed(args, students, teacher, photo, say)
    if students and teacher is not None:
        pair_dirs = args.pairs_dir or (
            [os.path.join(args.data, "raindrop_pairs")] if args.data else []
        )
        fidelity(students, teacher, folder, [os.path.normpath(d) for d in pair_dirs], say)
    import keras

    say()
    say(f"keras {keras.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs")
    report.save(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
