"""Google's ai-edge-quantizer, static int8, as a comparison row of `bench_export.py`.

ai-edge-quantizer (PyPI `ai-edge-quantizer`, the extra `pip install -e .[compare]`)
quantizes a float `.tflite` after the fact. The row takes the float32 `.tflite`
the benchmark exports (mode `none`), quantizes it with the package's static
int8 recipe (`recipe.static_wi8_ai8()`: int8 weights and activations, ranges
min/max over the calibration samples), calibrated on the very samples the
project's int8 export calibrates on, and measures it as the benchmark measures
the other `.tflite` files. Its table row stands next to `TFLite int8`, so the
day the package catches up with the project's own int8 pipeline
(`tf_deraindrop.export.int8`) is seen. Without the package, the row reads
"skipped: pip install -e .[compare]"; a quantizer error is a row too, never
the benchmark's end.
"""

from __future__ import annotations

import os
import time
from importlib import metadata

import numpy as np

ENGINE = "ai-edge-quantizer int8"
SKIPPED = "skipped: pip install -e .[compare]"

#: The /proc/cpuinfo flags that decide int8 and bfloat16 speed on x86.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def calibration_samples(folder: str, height: int, width: int, count: int) -> list[np.ndarray]:
    """The samples `export_tflite(..., quantize="int8", calibration_dir=folder)` calibrates on."""
    from tf_deraindrop.export.samples import gather_images

    found = gather_images("int8", folder, False, None, height, width, count, 1)
    return found.calibration_samples()


def quantize_static_int8(float_path: str, samples, output: str, threads: int) -> float:
    """Quantizes the `.tflite` at `float_path` to `output` with `static_wi8_ai8`; the seconds.

    Calibration runs the float model on `samples` (`(H, W, 3)` float32) through
    its `derain` signature.
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    runner = Interpreter(model_path=float_path).get_signature_runner("derain")
    (name,) = runner.get_input_details()
    start = time.perf_counter()
    job = quantizer.Quantizer(float_path, recipe.static_wi8_ai8())
    data = {"derain": [{name: np.asarray(s, np.float32)[None]} for s in samples]}
    ranges = job.calibrate(data, num_threads=threads)
    result = job.quantize(ranges, enable_progress_bar=False, enable_progress_report=False)
    seconds = time.perf_counter() - start
    with open(output, "wb") as f:
        f.write(result.quantized_model)
    return seconds


def accuracy(outs, expected) -> dict:
    """PSNR (per image) and max error of outputs against the Keras float ones, both clipped."""
    from tf_deraindrop.metrics import psnr

    return {
        "psnr": [psnr(o, e) for o, e in zip(outs, expected)],
        "max_error": max(
            float(np.abs(np.clip(o, 0, 1) - np.clip(e, 0, 1)).max()) for o, e in zip(outs, expected)
        ),
    }


def aeq_row(generator, float_path: str, folder: str, tests, args) -> dict:
    """The ai-edge-quantizer int8 row for `generator`, whose float32 export is `float_path`.

    `folder` holds the calibration photos, `tests` are `(name, image)` pairs at
    the export size, `args` the benchmark's flags (size, threads, runs, samples,
    `no_speed`). A row with `skipped` says why there is nothing to measure.
    """
    try:
        import ai_edge_quantizer  # noqa: F401
    except ImportError:
        return {"engine": ENGINE, "skipped": SKIPPED}
    from tf_deraindrop.export.analysis import xnnpack_coverage
    from tf_deraindrop.export.benchmark import spawn_worker, summarize
    from tf_deraindrop.export.convert import WEIGHT_BYTES
    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.models.dtype import float32_generator

    path = os.path.splitext(float_path)[0] + "_aeq_int8.tflite"
    samples = calibration_samples(folder, args.height, args.width, args.calibration_samples)
    try:
        seconds = quantize_static_int8(float_path, samples, path, args.threads)
        derainer = LiteDerainer(path, threads=args.threads)
    except Exception as err:  # the package's failure is a result, not the benchmark's end
        return {"engine": ENGINE, "skipped": f"failed: {type(err).__name__}: {err}"[:300]}
    reference = float32_generator(generator)
    expected = [np.asarray(reference(t[None], training=False)["outputs"][-1])[0] for _, t in tests]
    size = os.path.getsize(path)
    coverage = xnnpack_coverage(path)
    row = {
        "engine": ENGINE,
        "size_mb": size / 1e6,
        "size_ratio": size / (generator.count_params() * WEIGHT_BYTES["int8"]),
        "xnnpack": f"{coverage.taken}/{coverage.total} ({coverage.partitions}p)",
        **accuracy([derainer.run_tile(t) for _, t in tests], expected),
        "convert_s": seconds,
    }
    if not args.no_speed:
        runs = [str(args.threads), str(args.warmup), str(args.runs), "0"]
        row.update(summarize(spawn_worker(["tflite", path, *runs])))
    return row


def comparison(rows: list[dict], names) -> list[str]:
    """ai-edge-quantizer's int8 against the project's: PSNR per image (dB), time, convert time."""
    by = {r["engine"]: r for r in rows}
    theirs, ours = by.get(ENGINE), by.get("TFLite int8")
    if theirs is None or ours is None:
        return []
    if "skipped" in theirs:
        return [f"{ENGINE}: {theirs['skipped']}"]
    per_image = ", ".join(
        f"{n} {a:.1f} vs {b:.1f} ({a - b:+.1f} dB)"
        for n, a, b in zip(names, theirs["psnr"], ours["psnr"])
    )
    out = [f"{ENGINE} vs project int8, PSNR vs Keras float: {per_image}"]
    if "median_s" in theirs and "median_s" in ours:
        out.append(
            f"{ENGINE} vs project int8, s/frame: {theirs['median_s']:.3f} vs "
            f"{ours['median_s']:.3f} (ratio {theirs['median_s'] / ours['median_s']:.2f})"
        )
    out.append(
        f"conversion: {ENGINE} {theirs['convert_s']:.1f} s (calibration + quantization), "
        f"project int8 {ours['convert_s']:.1f} s (export)"
    )
    return out


def cpu_line() -> str:
    """The CPU's model name, core count and the int8-relevant flags it has and lacks."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    has = [f for f in CPU_FLAGS if f in flags]
    lacks = [f for f in CPU_FLAGS if f not in flags]
    return (
        f"CPU: {model}, {os.cpu_count()} cores; flags: {' '.join(has) or '-'}"
        f" (not: {' '.join(lacks) or '-'})"
    )


def versions() -> str:
    """The versions of the packages the row depends on."""
    found = []
    for package in ("ai-edge-quantizer", "ai-edge-litert", "numpy"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)
