"""Attentive GAN training step: Keras (float32, mixed_bfloat16) against PyTorch, and the FLOP floor.

One training step is what `AttentiveGAN.train_step` does: the generator forward,
one discriminator update (on the clean and the derained crop), one generator
update against the updated discriminator, with the attention, multi-scale,
adversarial and VGG16 perceptual losses (VGG weights random here: same cost),
Adam for both networks. The PyTorch step (reference/torch_training.py)
does the same in the same order, from the same weights: the generator comes
from one random authors'-layout checkpoint, the discriminator and the VGG are
copied from the Keras ones. Its first step's losses are printed next to Keras'
to show that both compute the same thing.

All settings run in one process on the same random batch, after warm-up steps
(tracing), in alternating rounds; a setting's time is the median of its steps.
The floor is the step's multiply-adds (generator, discriminator and VGG,
forward and backward, counted layer by layer) at this CPU's float32 GEMM rate,
measured with numpy in a fresh process as benchmarks/inference/bench_generator.py does.

Usage:
    python benchmarks/training/bench_train.py          # crop 224 (the paper's), batch 1, 2 threads
    python benchmarks/training/bench_train.py --quick  # crop 64, a few steps: checks it runs
    python benchmarks/training/bench_train.py --xla --steps 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's OpenMP threads spin while they wait by default; on a CPU shared with
# other processes a descheduled thread then stalls every barrier (a crop-64 step
# took 41 s instead of 3.2 s here under load). Passive waiting keeps PyTorch's
# baseline fair; it must be set before PyTorch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

from benchmarks.common import generator_macs, numpy_matmul_gflops, random_checkpoint  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crop", type=int, default=224, help="square crop (default: 224)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size (default: 1)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round (default: 4)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--no-perceptual", action="store_true", help="leave out the VGG16 loss")
    parser.add_argument("--no-bf16", action="store_true", help="leave out mixed_bfloat16")
    parser.add_argument("--no-torch", action="store_true", help="leave out PyTorch")
    parser.add_argument(
        "--no-channels-last",
        action="store_true",
        help="leave out PyTorch with channels_last tensors (its oneDNN layout)",
    )
    parser.add_argument("--xla", action="store_true", help="also time Keras float32 with XLA")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="crop 64, 1 warm-up, 1 round of 2 timed steps: checks the script runs",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.crop, args.steps, args.warmup, args.rounds = 64, 2, 1, 1
    if args.crop < 16 or args.crop % 4:
        parser.error("--crop must be a multiple of 4, at least 16")
    if min(args.steps, args.warmup, args.batch_size, args.rounds, args.threads) < 1:
        parser.error("--steps, --warmup, --rounds, --batch-size and --threads must be at least 1")
    return args


# --- FLOP count -------------------------------------------------------------------------------


def _strided_size(size: int) -> int:
    return (size + 2 - 5) // 4 + 1


def discriminator_layer_macs(crop: int) -> list[int]:
    """Multiply-adds of each discriminator layer on one crop (docs/architecture.md, section 4)."""
    full = crop * crop
    widths = (3, 8, 16, 64, 128, 128, 128)
    layers = [cin * cout * 25 * full for cin, cout in zip(widths[:-1], widths[1:])]
    layers.append(128 * 25 * full)  # conv_mask
    s7 = _strided_size(crop)
    s8 = _strided_size(s7)
    layers.append(128 * 64 * 25 * s7 * s7)  # conv7
    layers.append(64 * 32 * 25 * s8 * s8)  # conv8
    layers.append(32 * s8 * s8 * 1024 + 1024)  # fc1, fc2
    return layers


def vgg_macs(crop: int) -> int:
    """Multiply-adds of VGG16 up to relu2_2 on one crop."""
    full, half = crop * crop, (crop // 2) ** 2
    return (3 * 64 + 64 * 64) * 9 * full + (64 * 128 + 128 * 128) * 9 * half


def train_step_flops(crop: int, batch: int, perceptual: bool) -> dict[str, float]:
    """FLOPs (2 per multiply-add) of one training step, by network.

    A layer's backward pass costs its forward twice over: once for the
    gradient of its input, once for that of its weights; a gradient nobody
    needs is not counted.

    * generator: forward, then the backward of both: 3 forwards;
    * discriminator: its update runs it on the clean and the derained crop
      and needs the weight and (but for the first layer, whose input is data)
      the input gradients: 2 x 3 forwards less 2 first-layer input gradients;
      the generator's update runs it once more and needs only the input
      gradients, down to the derained crop: 2 forwards. 8 forwards in all;
    * VGG (frozen): forward on both crops, input gradients on the derained one: 3 forwards.
    """
    g = generator_macs(crop, crop)
    d_layers = discriminator_layer_macs(crop)
    d = sum(d_layers)
    v = vgg_macs(crop) if perceptual else 0
    macs = {
        "generator": 3 * g,
        "discriminator": 8 * d - 2 * d_layers[0],
        "vgg": 3 * v,
    }
    flops = {name: 2.0 * m * batch for name, m in macs.items()}
    flops["forward generator"] = 2.0 * g * batch
    flops["forward discriminator"] = 2.0 * d * batch
    flops["forward vgg"] = 2.0 * v * batch
    flops["step"] = sum(flops[name] for name in ("generator", "discriminator", "vgg"))
    return flops


# --- Keras ------------------------------------------------------------------------------------


def build_keras(checkpoint: str, crop: int, perceptual: bool, precision: str, jit: bool):
    """The compiled `AttentiveGAN`, built inside the precision policy as training builds it."""
    import keras

    from tf_deraindrop.losses import PerceptualLoss
    from tf_deraindrop.models import Discriminator
    from tf_deraindrop.official.checkpoint import import_official_checkpoint
    from tf_deraindrop.training.distribute import precision_policy
    from tf_deraindrop.training.gan import AttentiveGAN

    with precision_policy(precision):
        keras.utils.set_random_seed(0)
        gan = AttentiveGAN(
            import_official_checkpoint(checkpoint),
            Discriminator(crop_size=crop),
            PerceptualLoss(weights=None) if perceptual else None,
        )
        gan.compile(
            keras.optimizers.Adam(2e-4, beta_1=0.5),
            keras.optimizers.Adam(2e-4, beta_1=0.5),
            jit_compile=jit,
        )
    return gan


def copy_keras_weights(source, target) -> None:
    """Gives `target` the generator, discriminator and VGG weights of `source`."""
    target.generator.set_weights(source.generator.get_weights())
    target.discriminator.set_weights(source.discriminator.get_weights())
    if source.perceptual is not None:
        target.perceptual.features.set_weights(source.perceptual.features.get_weights())


def step_timer():
    """A Keras callback that records each batch's wall time and the first batch's losses."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.first_logs, self.start = [], None, 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            # Reading the values waits for the step, should it run asynchronously.
            values = {k: float(np.asarray(v)) for k, v in (logs or {}).items()}
            self.times.append(time.perf_counter() - self.start)
            if self.first_logs is None:
                self.first_logs = values

    return StepTimer()


def keras_steps(gan, data, steps: int) -> tuple[list[float], dict]:
    timer = step_timer()
    gan.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    return timer.times, timer.first_logs


# --- PyTorch ----------------------------------------------------------------------------------


def build_torch(checkpoint: str, keras_gan, channels_last: bool):
    import torch

    from reference.torch_generator import ReferenceGenerator
    from reference.torch_training import (
        ReferenceGANStep,
        discriminator_from_keras,
        vgg_from_keras,
    )

    generator = ReferenceGenerator()
    generator.load_state_dict(torch.load(checkpoint))
    discriminator = discriminator_from_keras(keras_gan.discriminator)
    vgg = vgg_from_keras(keras_gan.perceptual) if keras_gan.perceptual is not None else None
    if channels_last:
        for module in (generator, discriminator, vgg):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    return ReferenceGANStep(generator, discriminator, vgg)


def torch_inputs(rainy, clean, mask, channels_last: bool):
    """RGB NHWC numpy -> BGR NCHW tensors, as the authors' code feeds its networks."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def bgr(x):
        t = torch.from_numpy(np.ascontiguousarray(x[..., ::-1].transpose(0, 3, 1, 2)))
        return t.contiguous(memory_format=fmt)

    m = torch.from_numpy(np.ascontiguousarray(mask.transpose(0, 3, 1, 2)))
    return bgr(rainy), bgr(clean), m.contiguous(memory_format=fmt)


def torch_steps(step, inputs, steps: int) -> tuple[list[float], dict]:
    times, first = [], None
    for _ in range(steps):
        start = time.perf_counter()
        logs = step(*inputs)
        times.append(time.perf_counter() - start)
        first = first or logs
    return times, first


# --- Main -------------------------------------------------------------------------------------


def random_batch(args):
    """A random batch of `(rainy, clean, mask)` crops, the same for every setting."""
    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.crop, args.crop)
    clean = rng.uniform(0, 1, (*shape, 3)).astype("float32")
    mask = (rng.random((*shape, 1)) > 0.9).astype("float32")
    rainy = np.clip(clean * (1 - mask) + 0.9 * mask, 0, 1).astype("float32")
    return rainy, clean, mask


def build_settings(checkpoint: str, args, batch) -> tuple[dict, dict]:
    """`{name: AttentiveGAN}` and `{name: (torch step, inputs)}`, all from the same weights.

    Every setting starts from the float32 Keras GAN's weights, before anyone steps.
    """
    perceptual = not args.no_perceptual
    reference = build_keras(checkpoint, args.crop, perceptual, "float32", jit=False)
    keras_settings = {"keras float32": reference}
    if args.xla:
        keras_settings["keras float32 XLA"] = build_keras(
            checkpoint, args.crop, perceptual, "float32", jit=True
        )
    if not args.no_bf16:
        keras_settings["keras mixed_bfloat16"] = build_keras(
            checkpoint, args.crop, perceptual, "mixed_bfloat16", jit=False
        )
    for gan in keras_settings.values():
        if gan is not reference:
            copy_keras_weights(reference, gan)
    torch_settings = {}
    if not args.no_torch:
        layouts = [False] if args.no_channels_last else [False, True]
        for channels_last in layouts:
            name = "pytorch channels_last" if channels_last else "pytorch"
            torch_settings[name] = (
                build_torch(checkpoint, reference, channels_last),
                torch_inputs(*batch, channels_last),
            )
    return keras_settings, torch_settings


def time_settings(keras_settings: dict, torch_settings: dict, data, args):
    """Warm-up, then alternating rounds: `(first_logs, warmup_s, times)` per setting name."""

    def run(name, steps):
        if name in keras_settings:
            return keras_steps(keras_settings[name], data, steps)
        step, inputs = torch_settings[name]
        return torch_steps(step, inputs, steps)

    names = [*keras_settings, *torch_settings]
    first_logs, warmup_s = {}, {}
    for name in names:
        print(f"First step and warm-up: {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        _, first_logs[name] = run(name, 1)
        if args.warmup > 1:
            run(name, args.warmup - 1)
        warmup_s[name] = time.perf_counter() - start
    times = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names:
            print(f"Round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            times[name] += run(name, args.steps)[0]
    return first_logs, warmup_s, times


def print_header(args, flops: dict, gemm_runs: list[float], versions: str) -> None:
    """The settings, the step's FLOPs and the float32 floor."""
    import tensorflow as tf

    perceptual = not args.no_perceptual
    gemm = max(gemm_runs)
    floor = flops["step"] / (gemm * 1e9)
    print(
        f"\nAttentive GAN training step, crop {args.crop}, batch {args.batch_size}, perceptual "
        f"loss {'on' if perceptual else 'off'}, {args.threads} threads (torch.set_num_threads; "
        f"TF intra-op {tf.config.threading.get_intra_op_parallelism_threads()}, inter-op "
        f"{tf.config.threading.get_inter_op_parallelism_threads() or 'default'}); median of "
        f"{args.rounds} x {args.steps} steps per setting, in alternating rounds, after "
        f"{args.warmup} warm-up\n{versions}, {os.cpu_count()} CPU(s), "
        f"{platform.processor() or 'x86_64'}\n"
    )
    g_free = generator_macs(args.crop, args.crop) - 46080 * args.crop**2
    print(
        f"forward GFLOP: generator {flops['forward generator'] / 1e9:.1f} (the authors' "
        f"count, zero LSTM state included; {2 * g_free * args.batch_size / 1e9:.1f} without), "
        f"discriminator {flops['forward discriminator'] / 1e9:.1f}, "
        f"VGG to relu2_2 {flops['forward vgg'] / 1e9:.1f}"
    )
    print(
        f"step GFLOP: generator 3 x fwd {flops['generator'] / 1e9:.1f} + discriminator "
        f"~8 x fwd {flops['discriminator'] / 1e9:.1f} + VGG 3 x fwd {flops['vgg'] / 1e9:.1f} "
        f"= {flops['step'] / 1e9:.1f}"
    )
    print(
        f"numpy float32 GEMM: {gemm:.0f} GFLOP/s (best of "
        f"{', '.join(f'{g:.0f}' for g in gemm_runs)}: two before the steps, two after) "
        f"-> float32 floor {floor:.2f} s per step\n"
    )


def print_rows(times: dict, warmup_s: dict, step_flops: float, floor: float):
    """The table of settings against PyTorch's best layout; `(rows, best torch setting)`."""
    names = list(times)
    torch_names = [n for n in names if n.startswith("pytorch")]
    best_torch = min(torch_names, key=lambda n: statistics.median(times[n]), default=None)
    torch_s = statistics.median(times[best_torch]) if best_torch else None
    header = (
        f"{'setting':24s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'GFLOP/s':>8s} "
        f"{'x floor':>8s} {'vs torch':>9s} {'warm-up s':>10s}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for name in names:
        s = statistics.median(times[name])
        vs = torch_s / s if torch_s else None
        print(
            f"{name:24s} {s:9.2f} {min(times[name]):7.2f} {max(times[name]):7.2f} "
            f"{step_flops / s / 1e9:8.0f} {s / floor:8.2f} "
            f"{(f'{vs:.2f}x' if vs else '-'):>9s} {warmup_s[name]:10.1f}"
        )
        rows.append(
            {
                "setting": name,
                "seconds_per_step_median": s,
                "seconds_per_step": times[name],
                "x_floor": s / floor,
                "speedup_vs_pytorch": vs,
                "warmup_seconds": warmup_s[name],
            }
        )
    if best_torch:
        print(f"vs torch: the median of {best_torch} (the faster layout) over the row's median")
    return rows, best_torch


def print_first_losses(first_logs: dict) -> None:
    """Losses of each setting's first step, from identical weights and data."""
    names = list(first_logs)
    terms = list(first_logs["keras float32"])
    terms = [t for t in terms if t in {k for logs in first_logs.values() for k in logs}]
    terms = [t for t in terms if not t.endswith(("_lr", "_loss_scale"))]
    print("\nLosses of the first step from identical weights and data:")
    print(f"{'term':16s}" + "".join(f"{n:>24s}" for n in names))
    for term in terms:
        cells = "".join(
            f"{first_logs[n][term]:24.6f}" if term in first_logs[n] else f"{'-':>24s}"
            for n in names
        )
        print(f"{term:16s}{cells}")
    for name in names:
        if name.startswith("pytorch"):
            diff = max(
                abs(first_logs[name][t] - first_logs["keras float32"][t])
                for t in terms
                if t in first_logs[name]
            )
            print(f"largest |keras float32 - {name}| over the terms: {diff:.2e}")


def write_json(path: str, report: dict) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)

    # The GEMM rate first, in a fresh process, before this one starts its thread pools.
    print("Measuring numpy's float32 GEMM rate ...", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    gemm_runs = [numpy_matmul_gflops(), numpy_matmul_gflops()]

    import keras
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)

    batch = random_batch(args)
    data = tf.data.Dataset.from_tensors(batch).repeat()
    print("Building the Keras and PyTorch GANs ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as folder:
        settings = build_settings(random_checkpoint(folder, seed=0), args, batch)
    first_logs, warmup_s, times = time_settings(*settings, data, args)

    # Again after the steps, so that other processes' load shows in both numbers.
    print("Measuring numpy's float32 GEMM rate again ...", file=sys.stderr, flush=True)
    gemm_runs += [numpy_matmul_gflops(), numpy_matmul_gflops()]
    gemm = max(gemm_runs)
    flops = train_step_flops(args.crop, args.batch_size, not args.no_perceptual)
    floor = flops["step"] / (gemm * 1e9)
    versions = f"keras {keras.__version__}, tensorflow {tf.__version__}, torch {torch.__version__}"
    print_header(args, flops, gemm_runs, versions)
    rows, best_torch = print_rows(times, warmup_s, flops["step"], floor)
    print(
        f"1-minute load average: {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        f"the end, on {os.cpu_count()} CPUs"
    )
    print_first_losses(first_logs)
    if args.json:
        report = {
            "crop": args.crop,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "perceptual": not args.no_perceptual,
            "gemm_gflops": gemm,
            "gemm_gflops_runs": gemm_runs,
            "pytorch_baseline": best_torch,
            "step_gflop": flops["step"] / 1e9,
            "floor_seconds": floor,
            "tensorflow": tf.__version__,
            "torch": torch.__version__,
            "rows": rows,
            "first_step_losses": first_logs,
        }
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
