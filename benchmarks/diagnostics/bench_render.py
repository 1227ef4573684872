"""Synthetic raindrop rendering speed, and whether it keeps up with training.

Side by side in one run, on the photos bundled with scikit-image:

* `render 720x480`: `render_raindrops` on full 720 x 480 frames, one process
  (the baseline of the ratios);
* `render 224x224`: on training-crop-sized images (rendering on the fly on
  crops);
* `render+PNG 720x480`: rendering plus encoding the three PNGs that
  `deraindrop synthesize` writes for each pair;
* `render 720x480 xN`: full frames in a pool of N worker processes.

With `--step-rate STEPS_PER_S` (the measured training step rate) it also says
what fraction of the training input rate on-the-fly rendering covers
(`--batch-size` pairs per step, 1 by default as in the paper).

    python benchmarks/diagnostics/bench_render.py --quick
    python benchmarks/diagnostics/bench_render.py --step-rate 3.2
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tf_deraindrop.synthetic.raindrops import render_raindrops  # noqa: E402
from tf_deraindrop.synthetic.synthesize import default_clean_images, fit_to_size  # noqa: E402
from tf_deraindrop.utils.images import to_uint8  # noqa: E402

_PHOTOS: list[np.ndarray] = []


def _photos(size: tuple[int, int]) -> list[np.ndarray]:
    return [fit_to_size(image, size) for _, image in default_clean_images()]


def _png(array: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.tell()


def _render(photos: list[np.ndarray], seeds: range, encode: bool = False) -> float:
    """Seconds for one rendered pair per seed."""
    start = time.perf_counter()
    for seed in seeds:
        clean = photos[seed % len(photos)]
        rainy, mask = render_raindrops(clean, seed=seed)
        if encode:
            _png(to_uint8(rainy))
            _png(to_uint8(clean))
            _png(mask.astype(np.uint8) * 255)
    return time.perf_counter() - start


def _worker_init(size: tuple[int, int]) -> None:
    _PHOTOS[:] = _photos(size)


def _worker_render(seed: int) -> int:
    _, mask = render_raindrops(_PHOTOS[seed % len(_PHOTOS)], seed=seed)
    return int(mask.sum())


def _pool_rate(size: tuple[int, int], workers: int, pairs: int) -> float:
    context = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
    with context.Pool(workers, initializer=_worker_init, initargs=(size,)) as pool:
        pool.map(_worker_render, range(workers))  # warm-up
        start = time.perf_counter()
        pool.map(_worker_render, range(1000, 1000 + pairs), chunksize=1)
        return pairs / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few pairs per case: a quick check")
    parser.add_argument("--pairs", type=int, default=None, help="pairs per case (default 40)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes of the pool case"
    )
    parser.add_argument(
        "--step-rate", type=float, default=None, help="training steps per second to compare with"
    )
    parser.add_argument("--batch-size", type=int, default=1, help="pairs per training step")
    args = parser.parse_args(argv)
    pairs = args.pairs or (4 if args.quick else 40)
    if pairs < 1 or args.workers < 1 or args.batch_size < 1:
        parser.error("--pairs, --workers and --batch-size must be at least 1")
    if args.step_rate is not None and args.step_rate <= 0:
        parser.error("--step-rate must be positive")

    full = _photos((480, 720))
    crop = _photos((224, 224))
    _render(full, range(2))  # warm-up (imports, caches)

    rows = []
    seconds = _render(full, range(100, 100 + pairs))
    rows.append(("render 720x480", pairs / seconds))
    seconds = _render(crop, range(100, 100 + pairs))
    rows.append(("render 224x224", pairs / seconds))
    seconds = _render(full, range(100, 100 + pairs), encode=True)
    rows.append(("render+PNG 720x480", pairs / seconds))
    if args.workers > 1:
        rate = _pool_rate((480, 720), args.workers, max(pairs, 2 * args.workers))
        rows.append((f"render 720x480 x{args.workers}", rate))

    base = rows[0][1]
    mode = "quick, " if args.quick else ""
    print(f"raindrop rendering ({mode}{pairs} pairs per case, {os.cpu_count()} CPUs)")
    print(f"{'case':<24}{'pairs/s':>10}{'ms/pair':>10}{'vs 720x480':>12}")
    for name, rate in rows:
        print(f"{name:<24}{rate:>10.2f}{1000 / rate:>10.1f}{rate / base:>11.2f}x")

    if args.step_rate is not None:
        need = args.step_rate * args.batch_size
        print(
            f"\ntraining at {args.step_rate:g} steps/s x batch {args.batch_size} "
            f"needs {need:.2f} pairs/s"
        )
        for name, rate in rows:
            if name.startswith("render+PNG"):
                continue
            verdict = "keeps up" if rate >= need else f"{need / rate:.1f}x too slow"
            print(f"  {name:<24} covers {100 * rate / need:7.1f} % of it ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
