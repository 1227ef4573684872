"""TFLite export, every mode, side by side with Keras (TF) and PyTorch on the same weights.

For each quantization mode: file size against the weights' own bytes, how
many ops XNNPACK takes, latency (median, p90) and peak memory at N threads,
and accuracy (PSNR on outputs clipped to [0, 1], peak 1, and max error)
against the Keras float32 generator on the real rainy photos. The Keras
generator and a PyTorch float32 reference of the network (built from
docs/architecture.md, reference/torch_generator.py) are timed in the same run; ratios compare
everything with them and with the float32 floor: the generator's FLOPs at
the float32 matrix-multiply rate numpy reaches on the same threads.

int8 calibrates on case1.jpg and holds case2.jpg out (both are reported): the
photos of `--data DIR`/real_raindrops, or synthetic scenes without `--data`.
With mode none, a row quantizes that float32 `.tflite` with Google's
ai-edge-quantizer (static int8, the same calibration samples: aeq_row.py);
without the package (`pip install -e .[compare]`) the row says it was skipped.
Each engine runs in its own process, with its thread count set at start.

    python benchmarks/export/bench_export.py                      # 480 x 720, 2 threads
    python benchmarks/export/bench_export.py --weights demo.keras # plus a trained generator
    python benchmarks/export/bench_export.py --quick              # 64 x 96, a quick check
    python benchmarks/export/bench_export.py --quick --accuracy-seeds 4 --no-speed
                                        # PSNR spread over random generators
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from benchmarks.common import add_data_flag, generator_macs  # noqa: E402
from benchmarks.export import aeq_row  # noqa: E402

MODES = ("none", "float16", "dynamic", "int8")

_MATMUL = """
import time, numpy as np
n = {n}
a = np.random.default_rng(0).random((n, n), dtype=np.float32)
for _ in range(2):
    a @ a
best = float("inf")
for _ in range(8):
    start = time.perf_counter()
    a @ a
    best = min(best, time.perf_counter() - start)
print(2 * n**3 / best / 1e9)
"""


def matmul_gflops(threads: int, n: int = 2048) -> float:
    """numpy's float32 GEMM rate on `threads` threads, best of 8, in a fresh process."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", _MATMUL.format(n=n)], capture_output=True, text=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def keras_to_state_dict(generator) -> dict[str, np.ndarray]:
    """A Keras generator's weights as the authors' `state_dict` (BGR, PyTorch layouts)."""
    from tf_deraindrop.official.names import generator_layers, official_weights

    state = {}
    for name, layer in generator_layers(generator).items():
        weight, bias = official_weights(name, np.asarray(layer.kernel), np.asarray(layer.bias))
        state[f"{name}.weight"], state[f"{name}.bias"] = weight, bias
    return state


def _torch_worker(checkpoint: str, h: int, w: int, threads: int, warmup: int, runs: int) -> None:
    import torch

    from reference.torch_generator import ReferenceGenerator
    from tf_deraindrop.export.benchmark import current_rss_mb, peak_rss_mb

    torch.set_num_threads(threads)
    baseline = current_rss_mb()
    model = ReferenceGenerator().eval()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    x = torch.rand((1, 3, h, w), generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for k in range(warmup + runs):
            start = time.perf_counter()
            model(x)
            if k >= warmup:
                times.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "peak_mb": peak_rss_mb(), "baseline_mb": baseline}))


def torch_latency(checkpoint, h, w, threads, warmup, runs) -> dict:
    args = [checkpoint, str(h), str(w), str(threads), str(warmup), str(runs)]
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--torch-worker", *args],
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError("PyTorch worker failed:\n" + done.stderr[-2000:])
    return json.loads(lines[-1])


def torch_outputs(state: dict, images: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    from reference.torch_generator import ReferenceGenerator, run_reference

    model = ReferenceGenerator().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return [run_reference(model, image[None])["outputs"][-1][0] for image in images]


def photos(data: str | None, h: int, w: int) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """A calibration folder (real photos or synthetic scenes), and test images fitted to h x w.

    The real photos are `data/real_raindrops/case{1,2}.jpg`; without them, synthetic scenes.
    """
    from tf_deraindrop.export.samples import fit_samples, synthetic_images
    from tf_deraindrop.utils.images import read_image, write_image

    folder = tempfile.mkdtemp(prefix="bench_export_photos_")
    names = ["case1.jpg", "case2.jpg"]
    real = os.path.join(data, "real_raindrops") if data else ""
    if data and all(os.path.isfile(os.path.join(real, n)) for n in names):
        images = [read_image(os.path.join(real, n)) for n in names]
        for n in names:
            shutil.copy(os.path.join(real, n), folder)
    else:
        print("real photos not found: synthetic scenes instead")
        images = synthetic_images(2, 2 * h, 2 * w, seed=11)
        for n, image in zip(names, images):
            write_image(os.path.join(folder, n.replace(".jpg", ".png")), image)
    fitted = [fit_samples([image], h, w, 1)[0] for image in images]
    return folder, list(zip(names, fitted))


def run_generator(label, generator, checkpoint, args, folder, tests, workdir) -> list[dict]:
    """Exports every mode for one generator and measures it; returns table rows."""
    from tf_deraindrop.export.benchmark import spawn_worker, summarize
    from tf_deraindrop.export.convert import WEIGHT_BYTES
    from tf_deraindrop.export.int8.options import Int8Options
    from tf_deraindrop.export.tflite import export_tflite
    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.metrics import psnr
    from tf_deraindrop.models.dtype import float32_generator

    h, w = args.height, args.width
    reference = float32_generator(generator)
    expected = [np.asarray(reference(t[None], training=False)["outputs"][-1])[0] for _, t in tests]
    params = generator.count_params()
    rows = []
    common = [str(args.threads), str(args.warmup), str(args.runs)]
    for mode in args.modes:
        path = os.path.join(workdir, f"{label}_{mode}.tflite")
        report = export_tflite(
            generator,
            path,
            h,
            w,
            quantize=mode,
            calibration_dir=folder if mode == "int8" else None,
            verify_model=False,
            int8=Int8Options(samples=args.calibration_samples),
            progress=False,
            log=lambda _: None,
        )
        derainer = LiteDerainer(path, threads=args.threads)
        outs = [derainer.run_tile(t) for _, t in tests]
        row = {
            "engine": f"TFLite {mode}",
            "size_mb": report.size / 1e6,
            "size_ratio": report.size / (params * WEIGHT_BYTES[mode]),
            "xnnpack": str(report.xnnpack.taken)
            + "/"
            + str(report.xnnpack.total)
            + f" ({report.xnnpack.partitions}p)",
            "psnr": [psnr(o, e) for o, e in zip(outs, expected)],
            "max_error": max(
                float(np.abs(np.clip(o, 0, 1) - np.clip(e, 0, 1)).max())
                for o, e in zip(outs, expected)
            ),
            "convert_s": report.seconds,
        }
        if not args.no_speed:
            row.update(summarize(spawn_worker(["tflite", path, *common, "0"])))
        rows.append(row)
        print(f"  {label} {mode}: done", flush=True)
    keras_row = {"engine": "Keras float32 (TF)", "size_mb": 4 * params / 1e6, "size_ratio": 1.0}
    torch_row = {"engine": "PyTorch float32", "size_mb": 4 * params / 1e6, "size_ratio": 1.0}
    torch_out = torch_outputs(keras_to_state_dict(reference), [t for _, t in tests])
    torch_row["psnr"] = [psnr(o, e) for o, e in zip(torch_out, expected)]
    torch_row["max_error"] = max(
        float(np.abs(np.clip(o, 0, 1) - np.clip(e, 0, 1)).max())
        for o, e in zip(torch_out, expected)
    )
    if not args.no_speed:
        keras_row.update(summarize(spawn_worker(["keras", checkpoint, f"{h}x{w}", *common])))
        torch_ckpt = os.path.join(workdir, f"{label}_torch.pt")
        import torch

        torch.save(
            {k: torch.from_numpy(v) for k, v in keras_to_state_dict(reference).items()}, torch_ckpt
        )
        torch_row.update(
            summarize(torch_latency(torch_ckpt, h, w, args.threads, min(args.warmup, 1), args.runs))
        )
    return rows + [keras_row, torch_row]


def print_table(label: str, rows: list[dict], floor_s: float | None, test_names) -> None:
    keras = next(r for r in rows if r["engine"].startswith("Keras"))
    torch_row = next(r for r in rows if r["engine"].startswith("PyTorch"))
    speed = "median_s" in keras
    head = (
        "| engine | size MB | x weights | XNNPACK ops | PSNR vs Keras "
        + "/".join(test_names)
        + " (dB) | max err |"
    )
    if speed:
        head += " median s | p90 s | peak MB | Keras/this | PyTorch/this | x floor |"
    print(f"\n### {label}\n")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        if "skipped" in r:
            print(f"| {r['engine']} | {r['skipped']} |")
            continue
        psnrs = " / ".join(f"{p:.1f}" for p in r["psnr"]) if "psnr" in r else "(reference)"
        err = f"{r['max_error']:.3g}" if "max_error" in r else "-"
        line = (
            f"| {r['engine']} | {r['size_mb']:.2f} | {r['size_ratio']:.3f} | "
            f"{r.get('xnnpack', '-')} | {psnrs} | {err} |"
        )
        if speed:
            line += (
                f" {r['median_s']:.3f} | {r['p90_s']:.3f} | {r['peak_mb']:.0f} | "
                f"{keras['median_s'] / r['median_s']:.2f}x | "
                f"{torch_row['median_s'] / r['median_s']:.2f}x | "
                f"{r['median_s'] / floor_s:.2f} |"
            )
        print(line)


def goals(rows: list[dict], floor_s: float | None) -> list[str]:
    """The issue's goals, each with its measured value."""
    by = {r["engine"]: r for r in rows}
    out = []
    for mode in MODES:
        r = by.get(f"TFLite {mode}")
        if r:
            out.append(f"size {mode}: {r['size_ratio']:.3f} x weights (goal within 5%)")
    int8 = by.get("TFLite int8")
    if int8:
        out.append(f"int8 PSNR vs float: {min(int8['psnr']):.1f} dB min (goal >= 40)")
    if floor_s and "median_s" in by["Keras float32 (TF)"]:
        keras, torch_row = by["Keras float32 (TF)"], by["PyTorch float32"]
        f32 = by.get("TFLite none")
        if f32:
            out.append(
                f"float32 TFLite / TF: {f32['median_s'] / keras['median_s']:.2f} (goal <= 1); "
                f"x floor: TFLite {f32['median_s'] / floor_s:.2f}, "
                f"TF {keras['median_s'] / floor_s:.2f} (goal <= 1.2)"
            )
        if int8:
            out.append(
                f"int8 speed-up over PyTorch float32: "
                f"{torch_row['median_s'] / int8['median_s']:.1f}x (goal >= 8)"
            )
        f16 = by.get("TFLite float16")
        if f16 and f32:
            out.append(
                f"float16 / float32: time {f16['median_s'] / f32['median_s']:.2f}, "
                f"size {f16['size_mb'] / f32['size_mb']:.2f} (goal 1.0 and 0.5)"
            )
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_flag(parser, required=False)  # without: synthetic scenes
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per engine (5)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--weights", help="also a trained generator (.keras or gen.pkl)")
    parser.add_argument(
        "--accuracy-seeds", type=int, default=1, help="random generators to measure (1)"
    )
    parser.add_argument("--no-speed", action="store_true", help="accuracy and size only")
    parser.add_argument("--quick", action="store_true", help="64 x 96, 2 runs, 4 samples")
    args = parser.parse_args()
    if args.quick:
        args.height, args.width, args.runs, args.warmup = 64, 96, 2, 1
        args.calibration_samples = 4
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    return args


def print_psnr_spread(all_rows: dict, modes) -> None:
    """The lowest and highest PSNR of each mode over the random generators and images."""
    print("\nPSNR vs Keras float, lowest over all random generators and images:")
    for mode in modes:
        values = [
            p
            for label, rows in all_rows.items()
            if label.startswith("random")
            for r in rows
            if r["engine"] == f"TFLite {mode}"
            for p in r["psnr"]
        ]
        print(f"  {mode}: min {min(values):.1f} dB, max {max(values):.1f} dB")


def main() -> None:
    if sys.argv[1:2] == ["--torch-worker"]:
        c, h, w, t, wu, r = sys.argv[2:]
        _torch_worker(c, int(h), int(w), int(t), int(wu), int(r))
        return
    args = parse_args()

    import keras
    import tensorflow as tf
    import torch

    from reference.torch_generator import save_random_checkpoint
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.official.checkpoint import import_official_checkpoint

    h, w = args.height, args.width
    workdir = tempfile.mkdtemp(prefix="bench_export_")
    folder, tests = photos(args.data, h, w)
    names = [n.split(".")[0] + ("*" if n == "case1.jpg" else "") for n, _ in tests]
    floor_s = None
    if not args.no_speed:
        gflops = matmul_gflops(args.threads)
        flops = 2 * generator_macs(h, w)
        floor_s = flops / (gflops * 1e9)
        print(
            f"{h} x {w}: {flops / 1e9:.0f} GFLOP per frame; numpy float32 matmul on "
            f"{args.threads} threads {gflops:.0f} GFLOP/s -> float32 floor {floor_s:.3f} s"
        )
    generators = []
    for seed in range(args.accuracy_seeds):
        checkpoint = os.path.join(workdir, f"random{seed}.pkl")
        save_random_checkpoint(checkpoint, seed=seed)
        generators.append((f"random He-init checkpoint, seed {seed}", checkpoint))
    if args.weights:
        generators.append((f"trained: {os.path.basename(args.weights)}", args.weights))
    all_rows = {}
    for index, (label, path) in enumerate(generators):
        generator = (
            import_official_checkpoint(path) if path.endswith(".pkl") else load_generator(path)
        )
        timed = not args.no_speed and (index == 0 or label.startswith("trained"))
        run_args = argparse.Namespace(**{**vars(args), "no_speed": not timed})
        rows = run_generator(f"g{index}", generator, path, run_args, folder, tests, workdir)
        if "none" in args.modes:  # Keras and PyTorch rows stay last
            float_path = os.path.join(workdir, f"g{index}_none.tflite")
            rows.insert(-2, aeq_row.aeq_row(generator, float_path, folder, tests, run_args))
        all_rows[label] = rows
        print_table(label, rows, floor_s if timed else None, names)
    print(f"\n(*) int8 calibrated on case1; case2 held out. {h} x {w}, {args.threads} threads")
    if args.accuracy_seeds > 1:
        print_psnr_spread(all_rows, args.modes)
    print("\nGoals:")
    for line in goals(next(iter(all_rows.values())), floor_s):
        print("  " + line)
    if args.weights:
        for line in goals(all_rows[generators[-1][0]], floor_s):
            print("  trained: " + line)
    for label, rows in all_rows.items():
        for line in aeq_row.comparison(rows, names):
            print(f"  {label}: {line}")
    print(f"\nkeras {keras.__version__}, tensorflow {tf.__version__}, torch {torch.__version__}")
    print(f"{aeq_row.versions()}\n{aeq_row.cpu_line()}")
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
