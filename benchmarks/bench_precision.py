"""`derain` in float32 and bfloat16 at 480 x 720: speed and PSNR between them.

For each generator (He-initialised random weights, seed 0; and a trained
one with `--weights`), on the real photos in ../shared/data (each resized
to cover 480 x 720 and centre-cropped): the time of `derain(...,
precision=p)` for float32, bfloat16 and auto (median over the photos, after
one warm-up call each), the PSNR of bfloat16 against float32 on the uint8
output `derain` returns and on the raw float output (clipped to [0, 1]),
and what `auto` chose from its probe. All in one process, side by side.

    python benchmarks/bench_precision.py [--weights generator.keras] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data")
PHOTOS = (
    "real_raindrops/case1.jpg",
    "real_raindrops/case2.jpg",
    "raindrop_pairs/data/0_rain.png",
)


def photos(height: int, width: int) -> list[tuple[str, np.ndarray]]:
    from export.samples import fit_samples
    from tf_deraindrop.images import read_image, to_uint8

    found = []
    for name in PHOTOS:
        path = os.path.join(DATA, name)
        if os.path.isfile(path):
            (sample,) = fit_samples([read_image(path)], height, width, 1)
            found.append((name, to_uint8(sample)))
    if not found:
        sys.exit(f"no photos under {DATA}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a trained generator (.keras) to measure too")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per photo (2)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from tests.torch_reference import save_random_checkpoint
    from tf_deraindrop import precision
    from tf_deraindrop.checkpoint import import_official_checkpoint
    from tf_deraindrop.inference import derain, load_generator
    from tf_deraindrop.metrics import psnr

    path = "/tmp/bench_precision_gen.pkl"
    save_random_checkpoint(path, seed=0)
    generators = [("random (He init, seed 0)", import_official_checkpoint(path))]
    if args.weights:
        generators.append((f"trained ({args.weights})", load_generator(args.weights)))
    images = photos(args.height, args.width)
    native, why = precision.native_bfloat16()
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    lines = [
        f"derain at {args.height} x {args.width}, {args.threads} threads; "
        f"photos: {', '.join(n for n, _ in images)}",
        f"{cpu}; native bfloat16: {native} ({why})",
        f"auto's probe bar {precision.AUTO_MIN_PSNR:g} dB on a "
        f"{precision.PROBE_SIZE[0]} x {precision.PROBE_SIZE[1]} probe",
        "",
    ]
    print("\n".join(lines), flush=True)
    for label, generator in generators:
        resolved = precision.resolve_generator(generator, "auto")
        line = f"{label}: auto -> {resolved}"
        print(line, flush=True)
        lines.append(line)
        times: dict[str, list[float]] = {"float32": [], "bfloat16": [], "auto": []}
        uint8_psnr, raw_psnr = [], []
        for precision_name in times:
            derain(generator, images[0][1], precision=precision_name)  # build, trace
        for name, image in images:
            outputs = {}
            for _ in range(args.repeats):  # interleaved: the machine's load hits all alike
                for precision_name in times:
                    start = time.perf_counter()
                    outputs[precision_name] = derain(generator, image, precision=precision_name)
                    times[precision_name].append(time.perf_counter() - start)
            uint8_psnr.append(psnr(outputs["bfloat16"], outputs["float32"], peak=255))
            x = image[None].astype(np.float32) / 255
            raw = {}
            for p in ("float32", "bfloat16"):
                model = precision.resolve_generator(generator, p).model
                raw[p] = np.clip(np.asarray(model.predict_on_batch(x)["outputs"][-1]), 0, 1)
            raw_psnr.append(psnr(raw["bfloat16"], raw["float32"]))
            last = {p: min(t[-args.repeats :]) for p, t in times.items()}
            line = (
                f"  {name}: best of {args.repeats}: float32 {last['float32']:.2f} s, bfloat16 "
                f"{last['bfloat16']:.2f} s, auto {last['auto']:.2f} s; bf16 vs f32 PSNR "
                f"{uint8_psnr[-1]:.2f} dB (uint8), {raw_psnr[-1]:.2f} dB (float)"
            )
            print(line, flush=True)
            lines.append(line)
        summary = []
        for stat in (min, statistics.median):
            f32 = stat(times["float32"])
            ratios = ", ".join(
                f"{p} {stat(times[p]):.2f} ({f32 / stat(times[p]):.2f}x)"
                for p in ("bfloat16", "auto")
            )
            summary.append(f"  {stat.__name__} s: float32 {f32:.2f}, {ratios}")
        summary += [
            f"  bf16 vs f32 PSNR: min {min(uint8_psnr):.2f} dB (uint8), {min(raw_psnr):.2f} dB "
            f"(float); goal: auto >= 2.5x float32, >= {precision.FRAME_MIN_PSNR:g} dB",
            "",
        ]
        print("\n".join(summary), flush=True)
        lines += summary
    lines.append(f"keras {keras.__version__}, tensorflow {tf.__version__}")
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "precision_cpu.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
