"""Training steps per second of the Attentive GAN, with and without XLA (`jit_compile`).

One training step is what `AttentiveGAN.train_step` does: the generator forward,
one discriminator update (on the clean and the derained crop), one generator
update with the perceptual loss (VGG16 features; random weights here, same cost).
Both settings run side by side in one process on the same random batch, after
warm-up steps that absorb tracing and XLA compilation; the table gives seconds
per step, steps per second and the ratio.

Usage:
    python benchmarks/bench_train.py             # crop 224, batch 1 (the paper's setting)
    python benchmarks/bench_train.py --quick     # crop 64, a few steps: checks it runs
    python benchmarks/bench_train.py --crop 128 --batch-size 2 --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crop", type=int, default=224, help="square crop (default: 224)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size (default: 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed runs per setting, alternating; the best counts (default: 1)",
    )
    parser.add_argument("--no-perceptual", action="store_true", help="leave out the VGG16 loss")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="crop 64, 1 warm-up and 2 timed steps: checks the script runs",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.crop, args.steps, args.warmup = 64, 2, 1
    if args.crop < 16 or args.crop % 4:
        parser.error("--crop must be a multiple of 4, at least 16")
    if args.steps < 1 or args.warmup < 1 or args.batch_size < 1 or args.repeats < 1:
        parser.error("--steps, --warmup, --batch-size and --repeats must be at least 1")
    return args


def build(jit: bool, args: argparse.Namespace):
    import keras

    from tf_deraindrop.losses import PerceptualLoss
    from tf_deraindrop.models import Discriminator, Generator
    from tf_deraindrop.training.gan import AttentiveGAN

    keras.utils.set_random_seed(0)
    gan = AttentiveGAN(
        Generator(),
        Discriminator(crop_size=args.crop),
        None if args.no_perceptual else PerceptualLoss(weights=None),
    )
    gan.compile(
        keras.optimizers.Adam(2e-4, beta_1=0.5),
        keras.optimizers.Adam(2e-4, beta_1=0.5),
        jit_compile=jit,
    )
    return gan


def timed_fit(gan, data, steps: int) -> float:
    start = time.perf_counter()
    gan.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.crop, args.crop)
    clean = rng.uniform(0, 1, (*shape, 3)).astype("float32")
    mask = (rng.random((*shape, 1)) > 0.9).astype("float32")
    rainy = np.clip(clean * (1 - mask) + 0.9 * mask, 0, 1).astype("float32")
    data = tf.data.Dataset.from_tensors((rainy, clean, mask)).repeat()

    settings = {"tf.function (jit_compile=False)": False, "XLA (jit_compile=True)": True}
    models, warmup_s = {}, {}
    for name, jit in settings.items():
        print(f"Building and warming up: {name} ...", file=sys.stderr, flush=True)
        models[name] = build(jit, args)
        warmup_s[name] = timed_fit(models[name], data, args.warmup)
    best = {name: float("inf") for name in settings}
    for _ in range(args.repeats):
        for name in settings:
            best[name] = min(best[name], timed_fit(models[name], data, args.steps) / args.steps)

    baseline = best["tf.function (jit_compile=False)"]
    print(
        f"\nAttentive GAN training step, crop {args.crop}, batch {args.batch_size}, "
        f"perceptual loss {'off' if args.no_perceptual else 'on'}; {args.steps} timed steps "
        f"after {args.warmup} warm-up; TensorFlow {tf.__version__}, "
        f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}\n"
    )
    header = f"{'setting':40s} {'s/step':>9s} {'steps/s':>9s} {'vs no XLA':>10s} {'warm-up s':>10s}"
    print(header)
    print("-" * len(header))
    rows = []
    for name in settings:
        seconds = best[name]
        ratio = baseline / seconds
        print(f"{name:40s} {seconds:9.3f} {1 / seconds:9.3f} {ratio:9.2f}x {warmup_s[name]:10.1f}")
        rows.append(
            {
                "setting": name,
                "jit_compile": settings[name],
                "seconds_per_step": seconds,
                "steps_per_second": 1 / seconds,
                "speedup_vs_no_xla": ratio,
                "warmup_seconds": warmup_s[name],
            }
        )
    if args.json:
        report = {
            "crop": args.crop,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "perceptual": not args.no_perceptual,
            "tensorflow": tf.__version__,
            "rows": rows,
        }
        tmp = f"{args.json}.partial"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
