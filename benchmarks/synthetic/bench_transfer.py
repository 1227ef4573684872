"""Does training on synthetic drops transfer to real ones? Train on renders, test on the real pair.

The lite student (`tf_deraindrop.models.LiteGenerator`) is trained from
scratch on drops rendered over scikit-image's photos only (never the real
pair's clean image), then scored with the published protocol (Y-channel
PSNR/SSIM, `tf_deraindrop.metrics`) on the real pair, against the rainy
input's own score. A pool of full-size frames is rendered once (drop sizes
are relative to the frame, so crops are cut after rendering) and training
samples random crops of it. `--renderer old` trains on the old renderer's
drops instead: the ablation.

    python benchmarks/synthetic/bench_transfer.py --steps 3000 --size small
    python benchmarks/synthetic/bench_transfer.py --renderer old --steps 3000
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

from tf_deraindrop.data.masks import compute_mask  # noqa: E402
from tf_deraindrop.metrics import psnr_y, ssim_y  # noqa: E402
from tf_deraindrop.synthetic.synthesize import default_clean_images, fit_to_size  # noqa: E402
from tf_deraindrop.utils.images import read_image, to_uint8  # noqa: E402

DEFAULT_PAIRS = os.path.join("..", "shared", "data", "raindrop_pairs")


def render_pool(count: int, renderer: str, preset: str, seed: int):
    """`count` rendered `(rainy, clean, mask)` frames of 480 x 720 over the sample photos."""
    from tf_deraindrop.synthetic.raindrops import render_raindrops as render_old
    from tf_deraindrop.synthetic.render import render_raindrops as render_new

    photos = [image for _, image in default_clean_images()]
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(count):
        clean = fit_to_size(photos[i % len(photos)], (480, 720), rng)
        if rng.uniform() < 0.5:
            clean = clean[:, ::-1].copy()
        if renderer == "old":
            rainy, _ = render_old(clean, seed=rng)
        else:
            rainy, _ = render_new(clean, seed=rng, preset=preset)
        # The dataset's mask rule, as the real pairs' masks are made.
        pool.append((rainy, clean, compute_mask(rainy, clean)))
    return pool


def batches(pool, batch: int, crop: int, rng: np.random.Generator):
    """Endless random crops of the pool: `(rainy, clean, mask)` float32 arrays."""
    while True:
        items = [pool[i] for i in rng.integers(len(pool), size=batch)]
        out = [[], [], []]
        for rainy, clean, mask in items:
            y = int(rng.integers(rainy.shape[0] - crop + 1))
            x = int(rng.integers(rainy.shape[1] - crop + 1))
            for k, array in enumerate((rainy, clean, mask)):
                out[k].append(array[y : y + crop, x : x + crop])
        rainy, clean, mask = (np.stack(a).astype(np.float32) for a in out)
        yield rainy, clean, mask[..., None]


def evaluate(model, rainy: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """Protocol PSNR/SSIM of the model's output on one real pair."""
    output = model(rainy[None].astype(np.float32), training=False)["outputs"][-1][0]
    output = to_uint8(np.clip(np.asarray(output), 0.0, 1.0))
    reference = to_uint8(clean)
    return psnr_y(output, reference), ssim_y(output, reference)


def make_step(model, optimizer):
    """A compiled training step: multi-scale MSE on the outputs plus the attention loss."""
    import tensorflow as tf

    from tf_deraindrop.losses import attention_loss, multiscale_loss

    @tf.function
    def step(rainy, clean, mask):
        with tf.GradientTape() as tape:
            result = model(rainy, training=True)
            maps = result["attention"]
            small_mask = tf.image.resize(mask, tf.shape(maps[0])[1:3], method="area")
            loss = tf.reduce_mean(multiscale_loss(result["outputs"], clean))
            loss += 0.05 * tf.reduce_mean(attention_loss(maps, small_mask))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs-dir", default=DEFAULT_PAIRS, help="real pair (Raindrop layout)")
    parser.add_argument("--renderer", choices=("new", "old"), default="new")
    parser.add_argument("--preset", default="raindrop-dataset", help="new renderer's preset")
    parser.add_argument("--size", default="small", help="LiteGenerator preset")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--pool", type=int, default=60, help="rendered frames to crop from")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--max-minutes", type=float, default=55.0, help="stop training then")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pairs_dir = (
        args.pairs_dir if os.path.isabs(args.pairs_dir) else os.path.join(ROOT, args.pairs_dir)
    )
    rainy_path = os.path.join(pairs_dir, "data", "0_rain.png")
    clean_path = os.path.join(pairs_dir, "gt", "0_clean.png")
    if not (os.path.exists(rainy_path) and os.path.exists(clean_path)):
        print(
            f"no real pair data/0_rain.png + gt/0_clean.png under {args.pairs_dir}; "
            "pass --pairs-dir",
            file=sys.stderr,
        )
        return 2
    import keras

    from tf_deraindrop.models import LiteGenerator

    real_rainy, real_clean = read_image(rainy_path), read_image(clean_path)
    base = (
        psnr_y(to_uint8(real_rainy), to_uint8(real_clean)),
        ssim_y(to_uint8(real_rainy), to_uint8(real_clean)),
    )
    print(f"real pair, rainy input: {base[0]:.2f} dB / {base[1]:.4f}", flush=True)
    start = time.time()
    pool = render_pool(args.pool, args.renderer, args.preset, args.seed)
    print(
        f"rendered {len(pool)} frames ({args.renderer}, {args.preset}) in "
        f"{time.time() - start:.0f} s",
        flush=True,
    )
    keras.utils.set_random_seed(args.seed)
    model = LiteGenerator.from_preset(args.size)
    optimizer = keras.optimizers.Adam(args.lr)
    step = make_step(model, optimizer)
    data = batches(pool, args.batch, args.crop, np.random.default_rng(args.seed + 1))
    start, done = time.time(), 0
    for done in range(1, args.steps + 1):
        loss = float(step(*next(data)))
        out_of_time = time.time() - start > 60 * args.max_minutes
        if done % args.eval_every == 0 or done == args.steps or out_of_time:
            psnr, ssim = evaluate(model, real_rainy, real_clean)
            print(
                f"step {done:6d}  loss {loss:.5f}  real pair {psnr:.2f} dB / {ssim:.4f}  "
                f"({time.time() - start:.0f} s)",
                flush=True,
            )
        if out_of_time:
            print("time limit reached", flush=True)
            break
    psnr, ssim = evaluate(model, real_rainy, real_clean)
    print(
        f"RESULT renderer={args.renderer} preset={args.preset} size={args.size} steps={done} "
        f"crop={args.crop} batch={args.batch}: {psnr:.2f} dB / {ssim:.4f} "
        f"(rainy input {base[0]:.2f} dB / {base[1]:.4f})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
