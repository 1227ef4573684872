"""Generator forward speed: Keras (TF, with and without XLA) against PyTorch, same weights.

Also measures this CPU's float32 matrix-multiply rate with numpy in the same
run, and states each implementation's achieved GFLOP/s against it: the
"float32 floor" is the time the generator's multiply-adds would take at that
rate.

    python benchmarks/inference/bench_generator.py            # 480 x 720, the paper's frame
    python benchmarks/inference/bench_generator.py --quick    # 96 x 128, a quick check
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

from benchmarks.common import generator_macs, numpy_matmul_gflops  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="96 x 128, one repeat")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument(
        "--bfloat16", action="store_true", help="also time mixed_bfloat16 (AMX on recent Xeons)"
    )
    args = parser.parse_args()
    if args.quick:
        args.height, args.width, args.repeats = 96, 128, 2

    import keras
    import tensorflow as tf
    import torch

    from reference.torch_generator import save_random_checkpoint
    from tf_deraindrop.export.benchmark import time_runs
    from tf_deraindrop.official.checkpoint import import_official_checkpoint

    torch.set_num_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "gen.pkl")
        reference = save_random_checkpoint(path, seed=0)
        generator = import_official_checkpoint(path)
        bf16 = import_official_checkpoint(path, "mixed_bfloat16") if args.bfloat16 else None

    h, w = args.height, args.width
    image = np.random.default_rng(0).random((1, h, w, 3), dtype=np.float32)
    flops = 2 * generator_macs(h, w)
    matmul = max(numpy_matmul_gflops(), numpy_matmul_gflops())
    floor = flops / (matmul * 1e9)
    print(f"frame {h} x {w}: {flops / 1e9:.0f} GFLOP per forward pass (the authors' network)")
    print(f"numpy float32 matmul: {matmul:.0f} GFLOP/s -> float32 floor {floor:.2f} s per frame")

    x = tf.constant(image)
    results = {}
    outputs = {}
    variants = [("keras-tf", generator, False), ("keras-tf-xla", generator, True)]
    if bf16 is not None:
        variants.append(("keras-tf-bf16", bf16, False))
    for name, model, jit in variants:
        fn = tf.function(lambda t, m=model: m(t, training=False)["outputs"][-1], jit_compile=jit)
        results[name] = time_runs(lambda fn=fn: fn(x).numpy(), 1, args.repeats)
        outputs[name] = np.clip(fn(x).numpy(), 0, 1)
    if not args.skip_torch:
        t_in = torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(0, 3, 1, 2)))

        def torch_forward():
            with torch.inference_mode():
                reference(t_in)

        results["pytorch"] = time_runs(torch_forward, 1, args.repeats)

    print(f"\n{'implementation':<16}{'median s':>10}{'GFLOP/s':>10}{'x floor':>9}{'vs torch':>10}")
    torch_s = statistics.median(results["pytorch"]) if "pytorch" in results else None
    for name, times in results.items():
        s = statistics.median(times)
        vs = f"{torch_s / s:.2f}x" if torch_s else "-"
        print(f"{name:<16}{s:>10.2f}{flops / s / 1e9:>10.0f}{s / floor:>9.2f}{vs:>10}")
    for name, out in outputs.items():
        if name != "keras-tf":
            mse = float(np.mean((out - outputs["keras-tf"]) ** 2))
            psnr = 10 * np.log10(1 / mse) if mse > 0 else float("inf")
            print(f"{name} output against keras-tf float32: PSNR {psnr:.1f} dB")
    print(
        f"\nkeras {keras.__version__}, tensorflow {tf.__version__}, torch {torch.__version__}, "
        f"{args.threads} threads"
    )


if __name__ == "__main__":
    main()
