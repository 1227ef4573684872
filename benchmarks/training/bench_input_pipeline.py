"""Input pipeline throughput: pairs per second at crop 224 from 720 x 480 pairs.

Side by side in one run, on the same temporary dataset:

* Raindrop layout, masks read from `mask/`;
* Raindrop layout, masks computed from the pairs (`masks.compute_mask`);
* TFRecord shards (`tf_deraindrop.data.records`);
* the first again with `cache=True` (decoded images kept in memory).

The dataset is rendered with `tf_deraindrop.synthetic.synthesize.synthesize_dataset`
(real photos from scikit-image with synthetic drops), or made of smooth
random images where data_tools is not there. With `--step-rate` (training
steps per second, from the training benchmark) it prints how many times
faster than training each pipeline delivers: above 1 the accelerator is
never starved.

With `--resume` it measures instead how long a resumed run waits for its
first batch when it resumes at the last step of an epoch (1,000 small pairs
by default), side by side: BEFORE, the way training resumed until the
pipeline took `check=`: the pairs checked up front, `make_dataset` checking
every header again, then `Dataset.skip`, which decodes and crops every
skipped pair; AFTER, the pairs checked once, `make_dataset(check=False,
skip=...)`, which drops the skipped examples as file names.

    python benchmarks/training/bench_input_pipeline.py --step-rate 0.5
    python benchmarks/training/bench_input_pipeline.py --quick
    python benchmarks/training/bench_input_pipeline.py --resume --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

HEIGHT, WIDTH = 480, 720


def make_pairs(root: str, count: int, seed: int = 0) -> str:
    """Writes `count` 720 x 480 pairs (with masks) in the Raindrop layout; returns how."""
    try:
        from tf_deraindrop.synthetic.synthesize import default_clean_images, synthesize_dataset
    except ImportError:
        synthesize_dataset = None
    if synthesize_dataset is not None:
        photos = default_clean_images()
        per_image = -(-count // len(photos))
        synthesize_dataset(
            root, photos, pairs_per_image=per_image, seed=seed, size=(HEIGHT, WIDTH), progress=False
        )
        return "tf_deraindrop.synthetic.synthesize (scikit-image photos, rendered drops)"
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


def write_small_pairs(root: str, count: int, height: int, width: int, seed: int = 0) -> None:
    """`count` random pairs of `width` x `height` with masks, in the Raindrop layout."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for sub in ("data", "gt", "mask"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for k in range(count):
        clean = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = rng.random((height, width)) < 0.1
        rainy = clean.copy()
        rainy[mask] = 255
        Image.fromarray(rainy).save(os.path.join(root, "data", f"{k}_rain.png"))
        Image.fromarray(clean).save(os.path.join(root, "gt", f"{k}_clean.png"))
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            os.path.join(root, "mask", f"{k}_mask.png")
        )


def resume_to_first_batch(pairs, skip: int, crop: int, batch: int, after: bool) -> dict:
    """Seconds of a resumed run's input setup: up-front check, dataset, first batch."""
    from tf_deraindrop import data

    start = time.perf_counter()
    checked, _ = data.check_pairs(pairs, crop_size=crop)  # the run's own check, both ways
    checked_at = time.perf_counter()
    options = dict(crop_size=crop, batch_size=batch, seed=0)
    if after:
        ds = data.make_dataset(checked, check=False, skip=skip, **options)
    else:
        ds = data.make_dataset(checked, **options).skip(skip)
    built_at = time.perf_counter()
    first = next(iter(ds))
    float(first[0][0, 0, 0, 0])
    done = time.perf_counter()
    return {
        "check": checked_at - start,
        "dataset": built_at - checked_at,
        "first_batch": done - built_at,
        "total": done - start,
        "first": first[0].numpy(),
    }


def resume_benchmark(args) -> int:
    import tensorflow as tf

    from tf_deraindrop import data

    root = args.keep or tempfile.mkdtemp(prefix="bench_resume_")
    lines = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    try:
        count, (h, w) = args.pairs or 1000, args.size
        start = time.perf_counter()
        write_small_pairs(root, count, h, w)
        pairs = data.find_pairs(root)
        steps = len(pairs) // args.batch_size
        skip = steps - 1  # resumed at the last step of the epoch
        say(
            f"resume to first batch: {len(pairs)} pairs of {w} x {h} (PNG, masks in mask/, "
            f"written in {time.perf_counter() - start:.1f} s), crop {args.crop_size}, batch "
            f"{args.batch_size}: {steps} steps per epoch, resumed at step {skip} (skip {skip})"
        )
        say(
            f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}; BEFORE and AFTER "
            f"alternate, {args.repeats} runs each, medians"
        )
        for after in (False, True):  # warm-up: TensorFlow's first traces, untimed
            resume_to_first_batch(pairs[:8], 2, args.crop_size, 1, after)
        runs = {False: [], True: []}
        for _ in range(args.repeats):
            for after in (False, True):
                runs[after].append(
                    resume_to_first_batch(pairs, skip, args.crop_size, args.batch_size, after)
                )
        # The same stream position both ways: the first batches are equal.
        np.testing.assert_array_equal(runs[False][0]["first"], runs[True][0]["first"])
        say("first batches equal: yes")
        say(f"{'':<54}{'check':>8}{'dataset':>9}{'1st batch':>11}{'total':>9}")
        labels = {
            False: "BEFORE: make_dataset checks again + Dataset.skip",
            True: "AFTER:  check once, check=False, skip=",
        }
        medians = {}
        for after in (False, True):
            medians[after] = {
                key: float(np.median([r[key] for r in runs[after]]))
                for key in ("check", "dataset", "first_batch", "total")
            }
            m = medians[after]
            say(
                f"{labels[after]:<54}{m['check']:>7.2f}s{m['dataset']:>8.2f}s"
                f"{m['first_batch']:>10.2f}s{m['total']:>8.2f}s"
            )
        ratio = medians[False]["total"] / medians[True]["total"]
        say(f"BEFORE / AFTER, total: {ratio:.1f}x")
        if args.output:
            os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
            with open(args.output, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def throughput_benchmark(args) -> int:
    """Pairs per second of each pipeline, side by side."""
    pairs_count = args.pairs or (5 if args.quick else 40)
    batches = args.batches or (10 if args.quick else 200)
    warmup = 3 if args.quick else 20

    import tensorflow as tf

    from tf_deraindrop import data
    from tf_deraindrop.data import record_writer

    root = args.keep or tempfile.mkdtemp(prefix="bench_input_")
    try:
        start = time.perf_counter()
        how = make_pairs(os.path.join(root, "pairs"), pairs_count)
        pairs = data.find_pairs(os.path.join(root, "pairs"))
        made = time.perf_counter() - start
        start = time.perf_counter()
        record_writer.write_tfrecords(
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few pairs and batches")
    parser.add_argument("--pairs", type=int, help="pairs in the temporary dataset")
    parser.add_argument("--batches", type=int, help="batches timed per pipeline")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--crop-size", type=int, help="224 (with --resume: 64)")
    parser.add_argument(
        "--step-rate", type=float, help="training steps per second to compare against"
    )
    parser.add_argument("--keep", help="write the dataset here and keep it (default: temporary)")
    parser.add_argument(
        "--resume", action="store_true", help="time to the first batch of a resumed run instead"
    )
    parser.add_argument(
        "--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"), help="--resume pairs"
    )
    parser.add_argument("--repeats", type=int, default=3, help="--resume runs of each way")
    parser.add_argument("--output", help="also write the --resume table to this file")
    args = parser.parse_args(argv)
    if args.crop_size is None:
        args.crop_size = 64 if args.resume else 224
    if args.resume:
        if args.crop_size > min(args.size):
            parser.error("--crop-size must fit in --size with --resume (e.g. --crop-size 64)")
        return resume_benchmark(args)
    return throughput_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
