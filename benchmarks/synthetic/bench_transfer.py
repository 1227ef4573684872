"""Does training on synthetic drops transfer to real ones? Train on renders, test on the real pair.

The lite student (`tf_deraindrop.models.LiteGenerator`) is trained from
scratch on drops rendered over scikit-image's offline photos only (never the
real pair's clean image; `transfer_data.py`), then scored with the published
protocol (Y-channel PSNR/SSIM, `tf_deraindrop.metrics`) on the real pair,
next to the rainy input's own score.

The real pair is the test set: it is scored once, after a fixed number of
steps, on an exponential moving average (EMA) of the weights under a cosine
learning-rate decay; there is no checkpoint or recipe choice on it. During
training only a held-out synthetic set (other renders, another seed) is
scored. `--renderer classic` trains on the classic renderer's drops (the
ablation); `--set key=value` overrides a renderer parameter (e.g. one effect
off). `--save model.keras` keeps the EMA model, `--card card.json` its numbers.

    python benchmarks/synthetic/bench_transfer.py --steps 5000
    python benchmarks/synthetic/bench_transfer.py --steps 5000 --renderer classic
    python benchmarks/synthetic/bench_transfer.py --steps 5000 --set f_number=64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from transfer_data import Pool, load_photos, parse_overrides  # noqa: E402

from tf_deraindrop.metrics import psnr_y, ssim_y  # noqa: E402
from tf_deraindrop.utils.images import read_image, to_uint8  # noqa: E402

DEFAULT_PAIRS = os.path.join("..", "shared", "data", "raindrop_pairs")


def cpu_model() -> str:
    """The CPU's model name and its SIMD flags of interest (Linux), else the platform."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} cores, {' '.join(simd)}"


def score(model, rainy: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """Protocol PSNR/SSIM (Y channel, uint8) of the model's output on one pair."""
    output = model(rainy[None].astype(np.float32), training=False)["outputs"][-1][0]
    output = to_uint8(np.clip(np.asarray(output), 0.0, 1.0))
    reference = to_uint8(clean)
    return psnr_y(output, reference), ssim_y(output, reference)


def make_step(model, optimizer, ssim_weight: float, ema_decay: float):
    """A compiled step: multi-scale MSE + attention loss (+ SSIM term), then the EMA update."""
    import tensorflow as tf

    from tf_deraindrop.losses import attention_loss, multiscale_loss

    ema = [tf.Variable(v, trainable=False) for v in model.trainable_variables]

    @tf.function
    def step(rainy, clean, mask):
        with tf.GradientTape() as tape:
            result = model(rainy, training=True)
            maps = result["attention"]
            small_mask = tf.image.resize(mask, tf.shape(maps[0])[1:3], method="area")
            loss = tf.reduce_mean(multiscale_loss(result["outputs"], clean))
            loss += 0.05 * tf.reduce_mean(attention_loss(maps, small_mask))
            if ssim_weight:
                out = tf.clip_by_value(result["outputs"][-1], 0.0, 1.0)
                loss += ssim_weight * (1.0 - tf.reduce_mean(tf.image.ssim(out, clean, 1.0)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        for average, v in zip(ema, model.trainable_variables):
            average.assign(ema_decay * average + (1.0 - ema_decay) * v)
        return loss

    return step, ema


class Swapped:
    """`with Swapped(model, ema):` the model holds the EMA weights inside the block."""

    def __init__(self, model, ema):
        self.model, self.ema = model, ema

    def __enter__(self):
        self.saved = [v.numpy() for v in self.model.trainable_variables]
        for v, average in zip(self.model.trainable_variables, self.ema):
            v.assign(average)
        return self.model

    def __exit__(self, *exc):
        for v, value in zip(self.model.trainable_variables, self.saved):
            v.assign(value)


def synthetic_score(model, frames) -> tuple[float, float]:
    """Mean protocol PSNR/SSIM over held-out rendered frames (centre 240 x 320)."""
    scores = [score(model, r[120:360, 200:520], c[120:360, 200:520]) for r, c, _ in frames]
    return tuple(float(v) for v in np.mean(scores, axis=0))


def clean_shift(model, photos) -> float:
    """Mean change (0-255 levels) the model makes to drop-free photos: 0 for a faithful model."""
    from tf_deraindrop.synthetic.synthesize import fit_to_size

    changes = []
    for photo in photos[:6]:
        clean = fit_to_size(photo, (480, 720))
        output = np.clip(np.asarray(model(clean[None], training=False)["outputs"][-1][0]), 0, 1)
        changes.append(float((output - clean).mean()) * 255.0)
    return float(np.mean(changes))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--pairs-dir", default=DEFAULT_PAIRS, help="real pair (Raindrop layout)")
    add("--renderer", choices=("new", "classic"), default="new")
    add("--preset", default="raindrop-dataset", help="new renderer's preset")
    add("--set", action="append", default=[], metavar="KEY=VALUE", help="renderer override")
    add("--photos", choices=("colour", "all"), default="all")
    add("--no-augment", dest="augment", action="store_false", help="flips only")
    add("--size", default="small", help="LiteGenerator preset")
    add("--steps", type=int, default=5000)
    add("--batch", type=int, default=4)
    add("--crop", type=int, default=160)
    add("--pool", type=int, default=60, help="rendered frames to crop from")
    add("--refresh", type=int, default=4, help="frames re-rendered every --refresh-every steps")
    add("--refresh-every", type=int, default=100)
    add("--lr", type=float, default=1e-3, help="peak; cosine decay to 5%% over --steps")
    add("--ssim-weight", type=float, default=0.0)
    add("--ema", type=float, default=0.999)
    add("--eval-every", type=int, default=1000, help="held-out synthetic score every N steps")
    add("--seed", type=int, default=0)
    add("--save", help="write the EMA model here (.keras)")
    add("--card", help="write the run's numbers here (.json)")
    return parser.parse_args(argv)


def real_pair(pairs_dir: str):
    """`(rainy, clean)` of the real pair `data/0_rain.png`, `gt/0_clean.png`, or None."""
    pairs_dir = pairs_dir if os.path.isabs(pairs_dir) else os.path.join(ROOT, pairs_dir)
    rainy_path = os.path.join(pairs_dir, "data", "0_rain.png")
    clean_path = os.path.join(pairs_dir, "gt", "0_clean.png")
    if not (os.path.exists(rainy_path) and os.path.exists(clean_path)):
        return None
    return read_image(rainy_path), read_image(clean_path)


def train(args, model, pool, held_out):
    """Trains `args.steps` steps; returns the EMA weights and the seconds it took."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(args.lr, args.steps, alpha=0.05)
    step, ema = make_step(model, keras.optimizers.Adam(schedule), args.ssim_weight, args.ema)
    rng = np.random.default_rng(args.seed + 1)
    start, render_s = time.time(), 0.0
    for done in range(1, args.steps + 1):
        loss = float(step(*pool.batch(args.batch, args.crop, rng)))
        if args.refresh and done % args.refresh_every == 0:
            t = time.time()
            pool.refresh(args.refresh)
            render_s += time.time() - t
        if done % args.eval_every == 0 or done == args.steps:
            with Swapped(model, ema):
                psnr, ssim = synthetic_score(model, held_out)
            print(
                f"step {done:6d}  loss {loss:.5f}  held-out synthetic (EMA) {psnr:.2f} dB / "
                f"{ssim:.4f}  ({time.time() - start:.0f} s, {render_s:.0f} s rendering)",
                flush=True,
            )
    return ema, time.time() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pair = real_pair(args.pairs_dir)
    if pair is None:
        print(f"skipped: no real pair data/0_rain.png + gt/0_clean.png under {args.pairs_dir}")
        return 2
    import keras

    from tf_deraindrop.models import LiteGenerator

    base = (psnr_y(*map(to_uint8, pair)), ssim_y(*map(to_uint8, pair)))
    print(f"real pair, rainy input: {base[0]:.2f} dB / {base[1]:.4f}", flush=True)
    render = dict(
        photos=load_photos(args.photos),
        renderer=args.renderer,
        preset=args.preset,
        overrides=parse_overrides(args.set),
        augment=args.augment,
    )
    start = time.time()
    pool = Pool(args.pool, args.seed, **render)
    held_out = Pool(8, args.seed + 10_000, **render).frames
    print(f"rendered {args.pool + 8} frames in {time.time() - start:.0f} s", flush=True)
    crops = [(r[120:360, 200:520], c[120:360, 200:520]) for r, c, _ in held_out]
    inputs = np.mean([(psnr_y(*map(to_uint8, rc)), ssim_y(*map(to_uint8, rc))) for rc in crops], 0)
    print(f"held-out synthetic, rainy input: {inputs[0]:.2f} dB / {inputs[1]:.4f}", flush=True)
    keras.utils.set_random_seed(args.seed)
    model = LiteGenerator.from_preset(args.size)
    ema, seconds = train(args, model, pool, held_out)
    with Swapped(model, ema):
        psnr, ssim = score(model, *pair)
        shift = clean_shift(model, render["photos"])
        if args.save:
            model.save(args.save)
    command = "python benchmarks/synthetic/bench_transfer.py " + " ".join(sys.argv[1:])
    print(
        f"RESULT {' '.join(sys.argv[1:])}: EMA after {args.steps} steps ({seconds / 60:.0f} min): "
        f"real pair {psnr:.2f} dB / {ssim:.4f}, rainy input {base[0]:.2f} dB / {base[1]:.4f}: "
        f"{psnr - base[0]:+.2f} dB, SSIM {ssim - base[1]:+.4f}; drop-free photos change by "
        f"{shift:+.1f} levels on average",
        flush=True,
    )
    if args.card:
        card = {
            "command": command,
            "steps": args.steps,
            "train_minutes": round(seconds / 60, 1),
            "real_pair": {"psnr": round(psnr, 2), "ssim": round(ssim, 4)},
            "rainy_input": {"psnr": round(base[0], 2), "ssim": round(base[1], 4)},
            "mean_change_on_drop_free_photos_levels": round(shift, 1),
            "machine": cpu_model(),
        }
        with open(args.card, "w", encoding="utf-8") as f:
            json.dump(card, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
