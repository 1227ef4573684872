"""Tiled against whole-image deraining: agreement (PSNR) and peak memory.

* Agreement: the real photos of `--data`/real_raindrops (720 x 480),
  upscaled to 1920 x 1280 (bicubic) and cropped to 1920 x 1080, derained in
  one pass (`max_pixels=None`) and with `derain`'s default tiles; PSNR of
  the tiled uint8 output against the whole-pass output, and the largest
  difference in levels. Also at larger overlaps, to show what it buys.
* Memory: peak resident memory (VmHWM) of a process that loads the
  generator and derains one 1920 x 1080 or 4000 x 3000 image with the
  default setting, each in its own process; and, for reference, the whole
  pass at 1920 x 1080.

The generator is `--teacher PATH` (a trained generator), or `--teacher random`
for random weights (the Keras initializers). The output names it.

    python benchmarks/inference/bench_tiling.py --teacher FILE --data DIR [--quick] [--note TEXT]

Writes benchmarks/results/tiling_cpu.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from benchmarks.common import RESULTS, ROOT, add_data_flag  # noqa: E402

# One process per measurement: VmHWM is the process's own high-water mark.
_CHILD = r"""
import json, os, sys, time
import numpy as np
from tf_deraindrop.inference.keras import derain
from tf_deraindrop.inference.loading import load_generator
from tf_deraindrop.models import Generator
from tf_deraindrop.inference.tiling import choose_tile
from tf_deraindrop.inference.keras import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP

def status():
    return {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/status")
            if l.startswith(("VmHWM", "VmRSS"))}

weights, task = sys.argv[1], json.loads(sys.argv[2])
if weights == "random":
    import keras
    keras.utils.set_random_seed(0)
    generator = Generator()
    generator.build((None, None, None, 3))
else:
    generator = load_generator(weights)
generator.predict_on_batch(np.zeros((1, 64, 64, 3), np.float32))  # graph built
loaded = status()["VmHWM"]
result = {"loaded_mb": loaded / 1024}

if task["kind"] == "memory":
    h, w = task["size"]
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    kwargs = {} if task["max_pixels"] == "default" else {"max_pixels": task["max_pixels"]}
    start = time.perf_counter()
    out = derain(generator, image, **kwargs)
    result["seconds"] = time.perf_counter() - start
    result["peak_mb"] = status()["VmHWM"] / 1024
    limit = DEFAULT_MAX_PIXELS if task["max_pixels"] == "default" else task["max_pixels"]
    result["tile"] = choose_tile(h, w, limit, DEFAULT_OVERLAP) if limit else None
else:
    from PIL import Image
    from tf_deraindrop.metrics import psnr
    rows = []
    for path in task["photos"]:
        with Image.open(path) as img:
            big = np.asarray(img.convert("RGB").resize((1920, 1280), Image.BICUBIC))
        image = big[100:1180]
        start = time.perf_counter()
        whole = derain(generator, image, max_pixels=None)
        t_whole = time.perf_counter() - start
        for overlap in task["overlaps"]:
            start = time.perf_counter()
            tiled = derain(generator, image, overlap=overlap)
            t_tiled = time.perf_counter() - start
            diff = np.abs(tiled.astype(int) - whole.astype(int))
            rows.append({
                "photo": os.path.basename(path), "overlap": overlap,
                "tile": choose_tile(1080, 1920, DEFAULT_MAX_PIXELS, overlap),
                "psnr": psnr(tiled.astype(float), whole.astype(float), 255.0),
                "max_diff": int(diff.max()),
                "over_2_levels": float((diff > 2).mean()),
                "whole_s": t_whole, "tiled_s": t_tiled,
            })
    result["rows"] = rows
print("RESULT " + json.dumps(result))
"""


def child(weights: str, task: dict) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, weights, json.dumps(task)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"measurement failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--teacher",
        required=True,
        metavar="PATH",
        help="the generator (.keras or gen.pkl), or 'random' for random weights",
    )
    add_data_flag(parser)
    parser.add_argument(
        "--quick", action="store_true", help="one photo, the default overlap, no memory runs"
    )
    parser.add_argument("--note", default="", help="a line on the generator, for the results")
    parser.add_argument("--out", default=os.path.join(RESULTS, "tiling_cpu.txt"))
    args = parser.parse_args()

    weights = args.teacher
    real = os.path.join(args.data, "real_raindrops")
    photos = sorted(os.path.join(real, n) for n in os.listdir(real) if n.lower().endswith(".jpg"))
    if args.quick:
        photos = photos[:1]
    from tf_deraindrop.inference.keras import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP

    overlaps = [DEFAULT_OVERLAP] if args.quick else [DEFAULT_OVERLAP, 2 * DEFAULT_OVERLAP]
    lines = [
        "python benchmarks/inference/bench_tiling.py" + (" --quick" if args.quick else ""),
        f"generator: {os.path.basename(weights)}" + (f" ({args.note})" if args.note else ""),
        f"derain defaults: max_pixels={DEFAULT_MAX_PIXELS}, overlap={DEFAULT_OVERLAP}",
        f"CPU cores: {os.cpu_count()}; started {time.strftime('%Y-%m-%d %H:%M')}",
        "",
    ]
    print("\n".join(lines), flush=True)

    agreement = child(weights, {"kind": "psnr", "photos": photos, "overlaps": overlaps})
    table = [
        "Tiled against whole pass, 1920 x 1080 (real photos upscaled):",
        "",
        "| photo | overlap | tile | PSNR (dB) | max diff (levels) | pixels > 2 levels off "
        "| whole (s) | tiled (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in agreement["rows"]:
        table.append(
            f"| {r['photo']} | {r['overlap']} | {r['tile'][0]} x {r['tile'][1]} | "
            f"{r['psnr']:.2f} | {r['max_diff']} | {100 * r['over_2_levels']:.3f} % | "
            f"{r['whole_s']:.1f} | {r['tiled_s']:.1f} |"
        )
    print("\n".join(table), flush=True)
    lines += table + [""]

    if args.quick:
        return _write(args.out, lines)
    memory = [
        "Peak resident memory (VmHWM), one process per row:",
        "",
        "| image | max_pixels | tile | peak RSS (MB) | after loading (MB) | derain (s) |",
        "|---|---|---|---:|---:|---:|",
    ]
    runs = [((1080, 1920), "default"), ((3000, 4000), "default"), ((1080, 1920), None)]
    for size, max_pixels in runs:
        r = child(weights, {"kind": "memory", "size": size, "max_pixels": max_pixels})
        tile = f"{r['tile'][0]} x {r['tile'][1]}" if r["tile"] else "whole image"
        label = "default" if max_pixels == "default" else "None (one pass)"
        memory.append(
            f"| {size[1]} x {size[0]} | {label} | {tile} | {r['peak_mb']:.0f} | "
            f"{r['loaded_mb']:.0f} | {r['seconds']:.1f} |"
        )
        print(memory[-1], flush=True)
    return _write(args.out, lines + memory)


def _write(path: str, lines: list[str]) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
