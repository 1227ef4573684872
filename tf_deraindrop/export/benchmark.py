"""Latency and peak memory of an exported `.tflite`, side by side with the Keras float generator.

    deraindrop benchmark derain_int8.tflite --threads 2 [--weights gen.pkl]

Each engine runs in a fresh subprocess (so that its peak memory is its own,
and its thread count is set before the runtime starts) on a random image of
the model's input size: a few warm-up runs, then `--runs` timed ones.
Latency is reported as median and 90th percentile; memory as the process'
peak resident set size, and the part of it above the process' size after
imports (the model's own share). The Keras generator's weights do not change
its speed; pass `--weights` to time the very generator the model came from.

Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np


def peak_rss_mb() -> float:
    """This process' peak resident set size in MB.

    Linux's VmHWM is reset by exec; `ru_maxrss` is not (a worker would
    report its parent's size at fork), so it is only the fallback.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """This process' resident set size now, in MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def time_runs(run: Callable[[], object], warmup: int, runs: int) -> list[float]:
    """Calls `run` `warmup` times, then `runs` times timed; the timed calls' seconds.

    Imports nothing heavy: benchmarks/ times JAX and PyTorch with it where
    TensorFlow is absent.
    """
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _tflite_worker(path: str, threads: int, warmup: int, runs: int, low_memory: bool) -> dict:
    from tf_deraindrop.inference.tflite import LiteDerainer

    baseline = current_rss_mb()
    derainer = LiteDerainer(path, threads=threads, low_memory=low_memory)
    h, w = derainer.tile_size
    tile = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    times = time_runs(lambda: derainer.run_tile(tile), warmup, runs)
    return {"times": times, "baseline_mb": baseline, "size": [h, w]}


def _keras_worker(weights: str | None, size, threads: int, warmup: int, runs: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tf_deraindrop.models import Generator

    baseline = current_rss_mb()
    if weights:
        from tf_deraindrop.inference.loading import load_generator
        from tf_deraindrop.models.dtype import float32_generator

        generator = float32_generator(load_generator(weights))
    else:
        generator = Generator()
        generator.build((None, None, None, 3))
    h, w = size
    image = tf.constant(np.random.default_rng(0).random((1, h, w, 3), dtype=np.float32))
    forward = tf.function(lambda x: generator(x, training=False)["outputs"][-1])
    times = time_runs(lambda: forward(image).numpy(), warmup, runs)
    return {"times": times, "baseline_mb": baseline}


def spawn_worker(args: list[str]) -> dict:
    """Runs `deraindrop benchmark --worker ARGS` and returns its JSON result."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "tf_deraindrop.export.benchmark", "--worker", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"benchmark worker failed ({' '.join(args[:2])}):\n{tail}")
    return json.loads(lines[-1])


def summarize(result: dict) -> dict:
    """Median, p90 (s) and memory (MB) of one worker's result."""
    times = np.asarray(result["times"])
    return {
        "median_s": float(np.median(times)),
        "p90_s": float(np.percentile(times, 90)),
        "peak_mb": float(result["peak_mb"]),
        "model_mb": float(result["peak_mb"] - result["baseline_mb"]),
    }


def benchmark(
    path: str,
    threads: int = 2,
    runs: int = 10,
    warmup: int = 2,
    weights: str | None = None,
    keras: bool = True,
    low_memory: bool = False,
) -> dict[str, dict]:
    """Times the `.tflite` and (with `keras`) the Keras float generator; returns summaries.

    With `low_memory`, also the `.tflite` run by `LiteDerainer(low_memory=True)`.
    """
    common = [str(threads), str(warmup), str(runs)]
    tflite = spawn_worker(["tflite", path, *common, "0"])
    results = {f"TFLite {os.path.basename(path)}": summarize(tflite)}
    if low_memory:
        small = spawn_worker(["tflite", path, *common, "1"])
        results[f"TFLite {os.path.basename(path)}, low memory"] = summarize(small)
    if keras:
        h, w = tflite["size"]
        keras_result = spawn_worker(["keras", weights or "", f"{h}x{w}", *common])
        results["Keras float32 generator"] = summarize(keras_result)
    return results


def table(results: dict[str, dict]) -> str:
    """A Markdown table of `benchmark` results, with speed ratios to the first row."""
    first = next(iter(results.values()))["median_s"]
    rows = [
        "| engine | median (s) | p90 (s) | peak RSS (MB) | above imports (MB) | time / first |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['median_s']:.3f} | {r['p90_s']:.3f} | {r['peak_mb']:.0f} | "
            f"{r['model_mb']:.0f} | {r['median_s'] / first:.2f}x |"
        )
    return "\n".join(rows)


def _worker_main(argv: list[str]) -> int:
    kind, target, *rest = argv
    if kind == "tflite":
        threads, warmup, runs, low_memory = (int(v) for v in rest)
        result = _tflite_worker(target, threads, warmup, runs, bool(low_memory))
    else:
        size, threads, warmup, runs = rest
        h, w = (int(v) for v in size.split("x"))
        result = _keras_worker(target or None, (h, w), int(threads), int(warmup), int(runs))
    result["peak_mb"] = peak_rss_mb()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    # The timing worker: `spawn_worker` runs each measurement in its own process.
    sys.exit(_worker_main(sys.argv[2:] if sys.argv[1:2] == ["--worker"] else sys.argv[1:]))
