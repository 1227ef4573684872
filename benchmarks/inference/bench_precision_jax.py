"""The generator under KERAS_BACKEND=jax: parity with PyTorch, and float32 vs mixed precision.

Runs where TensorFlow is absent (the GPU machine has JAX and PyTorch only),
which also proves the layers, models and losses are backend-neutral.

1. Parity: the JAX generator, imported from a random He-initialised reference
   checkpoint, against the PyTorch reference on the same device, with full
   float32 matmul precision.
2. Training cost: generator forward + backward of the paper's generator loss
   (attention, multiscale, perceptual on a random-weight VGG16, adversarial
   through the discriminator) at crop 224, jit-compiled, for float32 (full
   precision and the backend's default, TF32 on NVIDIA), mixed_float16 and
   mixed_bfloat16, as images per second and ratios against float32.
3. Inference: one 480 x 720 frame, each precision, against PyTorch float32.

    KERAS_BACKEND=jax python benchmarks/inference/bench_precision_jax.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# No TensorFlow here, nor in what this imports: the GPU machine has none.
from benchmarks.common import median_time  # noqa: E402

PRECISIONS = (
    ("float32 (full)", "float32", "highest"),
    ("float32 (default/TF32)", "float32", "default"),
    ("mixed_float16", "mixed_float16", "default"),
    ("mixed_bfloat16", "mixed_bfloat16", "default"),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a CPU check")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.crop, args.repeats = 1, 32, 2
    args.frame = (96, 128) if args.quick else (480, 720)
    return args


def parity(generator, reference, rng) -> None:
    """Prints the largest difference of the JAX generator from PyTorch on a 64 x 96 crop."""
    import jax
    import numpy as np

    from reference.torch_generator import run_reference

    crop = rng.random((1, 64, 96, 3), dtype=np.float32)
    with jax.default_matmul_precision("highest"):
        ours = generator(crop)
    theirs = run_reference(reference, crop)
    errors = [
        float(np.abs(np.asarray(a) - b).max())
        for key in ("attention", "outputs")
        for a, b in zip(ours[key], theirs[key])
    ]
    print(f"parity vs PyTorch (CPU reference), 64x96: max abs error {max(errors):.2e}")


def loss_function(g, d, perceptual, scale, batch):
    """The generator's loss (times `scale`) as a function of its variables' values."""
    import jax.numpy as jnp

    from tf_deraindrop import losses

    rainy, clean, mask = batch

    def loss_fn(trainable, non_trainable):
        result, _ = g.stateless_call(trainable, non_trainable, rainy)
        output = result["outputs"][-1]
        fake = d(output)
        total = (
            losses.attention_loss(result["attention"], mask)
            + losses.multiscale_loss(result["outputs"], clean)
            + perceptual(output, clean)
            + 0.01 * losses.generator_adversarial_loss(fake["logit"])
        )
        return jnp.mean(total) * scale

    return loss_fn


def time_precision(policy: str, precision: str, weights, batch, frame_in, args):
    """Seconds of one training step (forward + backward) and of one frame, under `policy`."""
    import jax
    import jax.numpy as jnp

    from tf_deraindrop import losses
    from tf_deraindrop.models import Discriminator, Generator

    c = args.crop
    g = Generator(dtype=policy)
    g.build((None, None, None, 3))
    g.set_weights(weights)
    d = Discriminator(crop_size=c, dtype=policy)
    d.build((None, c, c, 3))
    perceptual = losses.PerceptualLoss(weights=None, dtype=policy)
    scale = 2.0**15 if policy == "mixed_float16" else 1.0
    grad_fn = jax.jit(jax.value_and_grad(loss_function(g, d, perceptual, scale, batch)))
    trainable = [v.value for v in g.trainable_variables]
    non_trainable = [v.value for v in g.non_trainable_variables]

    def step():
        loss, grads = grad_fn(trainable, non_trainable)
        jax.block_until_ready(grads)
        assert bool(jnp.isfinite(loss)), "non-finite loss"

    infer = jax.jit(lambda t, nt, x: g.stateless_call(t, nt, x)[0]["outputs"][-1])

    def forward():
        jax.block_until_ready(infer(trainable, non_trainable, frame_in))

    with jax.default_matmul_precision(precision):
        train_s = median_time(step, args.repeats, warmup=2)  # the first untimed call compiles
        infer_s = median_time(forward, args.repeats, warmup=2)
    return train_s, infer_s


def torch_time(reference, frame, repeats: int) -> float:
    """Median seconds of the PyTorch float32 reference on one frame (full precision)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = reference.to(device)
    frame_t = torch.rand((1, 3, *frame), device=device)

    def torch_forward():
        with torch.inference_mode():
            model(frame_t)
        if device == "cuda":
            torch.cuda.synchronize()

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return median_time(torch_forward, repeats, warmup=2)


def print_table(rows, torch_s: float, args) -> None:
    b, c, frame = args.batch, args.crop, args.frame
    base_train, base_infer = rows[0][1], rows[0][2]
    print(
        f"\ngenerator loss forward+backward, batch {b}, crop {c}; inference {frame[0]}x{frame[1]}"
    )
    print(
        f"{'precision':<24}{'train img/s':>12}{'vs fp32':>9}{'infer ms':>10}{'vs fp32':>9}"
        f"{'vs torch fp32':>15}"
    )
    for label, train_s, infer_s in rows:
        print(
            f"{label:<24}{b / train_s:>12.1f}{base_train / train_s:>8.2f}x{infer_s * 1e3:>10.1f}"
            f"{base_infer / infer_s:>8.2f}x{torch_s / infer_s:>14.2f}x"
        )
    print(f"{'pytorch float32 (full)':<24}{'':>12}{'':>9}{torch_s * 1e3:>10.1f}")


def main() -> None:
    args = parse_args()

    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np
    import torch

    from reference.torch_generator import save_random_checkpoint
    from tf_deraindrop.official.checkpoint import import_official_checkpoint

    assert keras.backend.backend() == "jax", keras.backend.backend()
    device = jax.devices()[0]
    print(
        f"JAX {jax.__version__} on {device.device_kind}; keras {keras.__version__}; "
        f"torch {torch.__version__}"
    )

    # 1. Parity with PyTorch.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "gen.pkl")
        reference = save_random_checkpoint(path, seed=0)
        generator = import_official_checkpoint(path)
    rng = np.random.default_rng(0)
    parity(generator, reference, rng)

    # 2. Generator forward + backward under each precision; 3. one frame.
    b, c = args.batch, args.crop
    rainy = jnp.asarray(rng.random((b, c, c, 3), dtype=np.float32))
    clean = jnp.asarray(rng.random((b, c, c, 3), dtype=np.float32))
    mask = jnp.asarray((rng.random((b, c, c, 1)) > 0.8).astype(np.float32))
    weights = generator.get_weights()
    frame_in = jnp.asarray(rng.random((1, *args.frame, 3), dtype=np.float32))
    rows = [
        (label, *time_precision(policy, precision, weights, (rainy, clean, mask), frame_in, args))
        for label, policy, precision in PRECISIONS
    ]
    print_table(rows, torch_time(reference, args.frame, args.repeats), args)


if __name__ == "__main__":
    main()
