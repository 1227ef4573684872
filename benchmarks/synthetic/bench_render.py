"""Rendering speed of the new raindrop renderer against the old one, same process, same photos.

Both render 480 x 720 frames made from scikit-image's photos, seed for seed,
interleaved (old, new, old, new, ...) so that a load change on the machine
hits both alike; the median time per frame of each and their ratio are
printed and written to `benchmarks/results/render_synthetic_cpu.txt`.

    python benchmarks/synthetic/bench_render.py --frames 10
    python benchmarks/synthetic/bench_render.py --preset dashcam
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from tf_deraindrop.synthetic.classic import render_raindrops as render_old  # noqa: E402
from tf_deraindrop.synthetic.render import render_raindrops as render_new  # noqa: E402
from tf_deraindrop.synthetic.synthesize import default_clean_images, fit_to_size  # noqa: E402


def time_renderers(frames: int, preset: str, size=(480, 720)) -> dict[str, list[float]]:
    """Seconds per frame of each renderer, interleaved over `frames` seeds."""
    photos = [fit_to_size(image, size) for _, image in default_clean_images()]
    render_old(photos[0], seed=0)  # warm-up: imports, caches
    render_new(photos[0], seed=0, preset=preset)
    times: dict[str, list[float]] = {"old": [], "new": []}
    for seed in range(100, 100 + frames):
        clean = photos[seed % len(photos)]
        renderers = {"old": (render_old, {}), "new": (render_new, {"preset": preset})}
        for name, (render, extra) in renderers.items():
            start = time.perf_counter()
            render(clean, seed=seed, **extra)
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10, help="frames per renderer")
    parser.add_argument("--preset", default="raindrop-dataset", help="new renderer's preset")
    parser.add_argument(
        "--out", default=os.path.join("benchmarks", "results", "render_synthetic_cpu.txt")
    )
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    times = time_renderers(args.frames, args.preset)
    old_ms = 1000 * float(np.median(times["old"]))
    new_ms = 1000 * float(np.median(times["new"]))
    lines = [
        f"raindrop rendering, 480 x 720, {args.frames} frames each, interleaved, "
        f"{os.cpu_count()} CPUs (median ms per frame)",
        f"{'renderer':<34}{'ms/frame':>10}{'min':>9}{'max':>9}",
    ]
    for name, label in (
        ("old", "old (tf_deraindrop.synthetic.classic)"),
        ("new", f"new (synthetic, {args.preset})"),
    ):
        ms = 1000 * np.array(times[name])
        lines.append(f"{label:<34}{np.median(ms):>10.0f}{ms.min():>9.0f}{ms.max():>9.0f}")
    lines.append(f"new / old: {new_ms / old_ms:.2f}x the time per frame")
    text = "\n".join(lines)
    print(text)
    out = args.out if os.path.isabs(args.out) else os.path.join(ROOT, args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
