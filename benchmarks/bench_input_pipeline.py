"""Input pipeline throughput: pairs per second at crop 224 from 720 x 480 pairs.

Side by side in one run, on the same temporary dataset:

* Raindrop layout, masks read from `mask/`;
* Raindrop layout, masks computed from the pairs (`masks.compute_mask`);
* TFRecord shards (`tf_deraindrop.data.records`);
* the first again with `cache=True` (decoded images kept in memory).

The dataset is rendered with `data_tools.synthesize.synthesize_dataset`
(real photos from scikit-image with synthetic drops), or made of smooth
random images where data_tools is not there. With `--step-rate` (training
steps per second, from the training benchmark) it prints how many times
faster than training each pipeline delivers: above 1 the accelerator is
never starved.

    python benchmarks/bench_input_pipeline.py --step-rate 0.5
    python benchmarks/bench_input_pipeline.py --quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

HEIGHT, WIDTH = 480, 720


def make_pairs(root: str, count: int, seed: int = 0) -> str:
    """Writes `count` 720 x 480 pairs (with masks) in the Raindrop layout; returns how."""
    try:
        from data_tools.synthesize import default_clean_images, synthesize_dataset
    except ImportError:
        synthesize_dataset = None
    if synthesize_dataset is not None:
        photos = default_clean_images()
        per_image = -(-count // len(photos))
        synthesize_dataset(
            root, photos, pairs_per_image=per_image, seed=seed, size=(HEIGHT, WIDTH), progress=False
        )
        return "data_tools.synthesize (scikit-image photos, rendered drops)"
    from PIL import Image

    rng = np.random.default_rng(seed)
    for sub in ("data", "gt", "mask"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    for k in range(count):
        phase = rng.random(3) * 6
        clean = 0.5 + 0.3 * np.sin(xx[..., None] / (20 + 10 * phase) + phase) * np.cos(
            yy[..., None] / 37.0
        )
        clean = np.clip(clean + rng.normal(0, 0.03, clean.shape), 0, 1)
        mask = np.zeros((HEIGHT, WIDTH), bool)
        for _ in range(60):
            cy, cx, r = rng.integers(0, HEIGHT), rng.integers(0, WIDTH), rng.integers(4, 20)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        rainy = clean.copy()
        rainy[mask] = np.clip(rainy[mask] * 0.6 + 0.3, 0, 1)
        to8 = lambda a: (a * 255 + 0.5).astype(np.uint8)  # noqa: E731
        Image.fromarray(to8(rainy)).save(os.path.join(root, "data", f"{k}_rain.png"))
        Image.fromarray(to8(clean)).save(os.path.join(root, "gt", f"{k}_clean.png"))
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            os.path.join(root, "mask", f"{k}_mask.png")
        )
    return "smooth random images (data_tools not found)"


def throughput(dataset, batches: int, warmup: int) -> float:
    """Pairs per second over `batches` batches after `warmup` batches."""
    iterator = iter(dataset)
    batch_size = None
    for _ in range(warmup):
        batch_size = int(next(iterator)[0].shape[0])
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    # Touch the last batch so that nothing is left in flight.
    float(batch[0][0, 0, 0, 0])
    elapsed = time.perf_counter() - start
    return batches * (batch_size or int(batch[0].shape[0])) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few pairs and batches")
    parser.add_argument("--pairs", type=int, help="pairs in the temporary dataset")
    parser.add_argument("--batches", type=int, help="batches timed per pipeline")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument(
        "--step-rate", type=float, help="training steps per second to compare against"
    )
    parser.add_argument("--keep", help="write the dataset here and keep it (default: temporary)")
    args = parser.parse_args(argv)
    pairs_count = args.pairs or (5 if args.quick else 40)
    batches = args.batches or (10 if args.quick else 200)
    warmup = 3 if args.quick else 20

    import tensorflow as tf

    from tf_deraindrop import data
    from tf_deraindrop.data import records

    root = args.keep or tempfile.mkdtemp(prefix="bench_input_")
    try:
        start = time.perf_counter()
        how = make_pairs(os.path.join(root, "pairs"), pairs_count)
        pairs = data.find_pairs(os.path.join(root, "pairs"))
        made = time.perf_counter() - start
        start = time.perf_counter()
        records.write_tfrecords(
            [(p.rainy, p.clean, p.mask) for p in pairs],
            os.path.join(root, "records"),
            num_shards=4,
            progress=False,
        )
        recorded = time.perf_counter() - start
        print(f"dataset: {len(pairs)} pairs of {WIDTH} x {HEIGHT} from {how} ({made:.1f} s)")
        print(f"TFRecords: 4 shards written in {recorded:.1f} s")
        print(
            f"crop {args.crop_size}, batch {args.batch_size}, {os.cpu_count()} CPU cores, "
            f"TensorFlow {tf.__version__}, {batches} batches timed after {warmup} warm-up"
            + (" (QUICK: few pairs and batches, rough numbers)" if args.quick else "")
        )
        no_masks = [data.Pair(p.rainy, p.clean, None, p.name) for p in pairs]
        common = dict(crop_size=args.crop_size, batch_size=args.batch_size, seed=0)
        pipelines = [
            ("Raindrop layout, masks from mask/", lambda: data.make_dataset(pairs, **common)),
            ("Raindrop layout, masks computed", lambda: data.make_dataset(no_masks, **common)),
            (
                "TFRecords (4 shards)",
                lambda: data.make_dataset(os.path.join(root, "records"), **common),
            ),
            (
                "Raindrop layout, cache=True",
                lambda: data.make_dataset(pairs, cache=True, **common),
            ),
        ]
        rows = []
        for name, build in pipelines:
            rate = throughput(build(), batches, warmup)
            rows.append((name, rate))
        base = rows[0][1]
        header = f"{'pipeline':<36}{'pairs/s':>10}{'vs mask/':>10}"
        if args.step_rate:
            header += f"{'vs training':>13}"
        print(header)
        for name, rate in rows:
            line = f"{name:<36}{rate:>10.1f}{rate / base:>9.2f}x"
            if args.step_rate:
                line += f"{rate / (args.step_rate * args.batch_size):>12.1f}x"
            print(line)
        if args.step_rate:
            need = args.step_rate * args.batch_size
            print(
                f"training consumes {need:.2f} pairs/s ({args.step_rate} steps/s x batch "
                f"{args.batch_size}); above 1x the input pipeline keeps up."
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
