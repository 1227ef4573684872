"""`derain` in float32 and bfloat16 at 480 x 720: speed and PSNR between them.

For each generator (He-initialised random weights, seed 0; and a trained
one with `--weights`), on the real photos under `--data` (each resized
to cover 480 x 720 and centre-cropped): the time of `derain(...,
precision=p)` for float32, bfloat16 and auto (median over the photos, after
one warm-up call each), the PSNR of bfloat16 against float32 on the uint8
output `derain` returns and on the raw float output (clipped to [0, 1]),
and what `auto` chose from its probe. All in one process, side by side.

    python benchmarks/inference/bench_precision.py --data DIR [--weights g.keras] [--threads 2]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

PHOTOS = (
    "real_raindrops/case1.jpg",
    "real_raindrops/case2.jpg",
    "raindrop_pairs/data/0_rain.png",
)


def photos(data: str, height: int, width: int) -> list[tuple[str, np.ndarray]]:
    from tf_deraindrop.export.samples import fit_samples
    from tf_deraindrop.utils.images import read_image, to_uint8

    found = []
    for name in PHOTOS:
        path = os.path.join(data, name)
        if os.path.isfile(path):
            (sample,) = fit_samples([read_image(path)], height, width, 1)
            found.append((name, to_uint8(sample)))
    if not found:
        sys.exit(f"no photos under {data}")
    return found


def main() -> None:
    cli = common.parser(__doc__, "a trained generator (.keras) to measure too", no_random=False)
    cli.add_argument("--repeats", type=int, default=2, help="timed calls per photo (2)")
    args = cli.parse_args()
    import keras

    tf = common.tf_threads(args.threads)

    from tf_deraindrop.inference import precision
    from tf_deraindrop.inference.keras import derain
    from tf_deraindrop.metrics import psnr

    generators = common.compared_generators(args.weights, True, random_first=True)
    images = photos(args.data, args.height, args.width)
    native, why = precision.native_bfloat16()
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    report = common.Report()
    report.say(
        f"derain at {args.height} x {args.width}, {args.threads} threads; "
        f"photos: {', '.join(n for n, _ in images)}",
        f"{cpu}; native bfloat16: {native} ({why})",
        f"auto's probe bar {precision.AUTO_MIN_PSNR:g} dB on a "
        f"{precision.PROBE_SIZE[0]} x {precision.PROBE_SIZE[1]} probe",
        "",
    )
    for label, generator in generators:
        resolved = precision.resolve_generator(generator, "auto")
        report.say(f"{label}: auto -> {resolved}")
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
            report.say(
                f"  {name}: best of {args.repeats}: float32 {last['float32']:.2f} s, bfloat16 "
                f"{last['bfloat16']:.2f} s, auto {last['auto']:.2f} s; bf16 vs f32 PSNR "
                f"{uint8_psnr[-1]:.2f} dB (uint8), {raw_psnr[-1]:.2f} dB (float)"
            )
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
        report.say(*summary)
    versions = f"keras {keras.__version__}, tensorflow {tf.__version__}"
    report.write(args.out, "precision_cpu.txt", versions)


if __name__ == "__main__":
    main()
