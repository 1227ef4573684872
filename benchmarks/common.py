"""What the benchmarks share: flags, the photos, the generators compared, the report.

A benchmark (`benchmarks/<topic>/bench_<name>.py`) run as a script puts the
repository root on `sys.path`, then imports this module as `benchmarks.common`
(and the PyTorch networks as `reference.*`). Nothing here imports the package,
Keras or TensorFlow at the top: `inference/bench_precision_jax.py` runs where
TensorFlow is absent, and answers `--help` where JAX is absent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = [
    "HELD_OUT",
    "RAINY",
    "RESULTS",
    "ROOT",
    "Report",
    "add_data_flag",
    "compared_generators",
    "generator_macs",
    "median_time",
    "numpy_matmul_gflops",
    "parser",
    "random_checkpoint",
    "read_scalars",
    "read_photos",
    "tflite_psnr",
    "tf_threads",
]

#: The repository root, and the folder the results files are kept in.
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RESULTS = os.path.join(ROOT, "benchmarks", "results")

#: The rainy photos the int8 benchmarks calibrate and fine-tune on (under
#: `--data`), and the one they hold out for scoring.
RAINY = ("real_raindrops/case1.jpg", "raindrop_pairs/data/0_rain.png")
HELD_OUT = "real_raindrops/case2.jpg"


def parser(
    doc: str, weights_help: str = "a trained generator (.keras)", no_random: bool = True
) -> argparse.ArgumentParser:
    """The flags of a benchmark comparing generators at 480 x 720 on 2 threads.

    `--data` (required), `--weights`, `--no-random` (unless `no_random` is false),
    `--height`, `--width`, `--threads` and `--out` (the results folder); the
    caller adds its own.
    """
    found = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_data_flag(found)
    found.add_argument("--weights", help=weights_help)
    if no_random:
        found.add_argument("--no-random", action="store_true", help="skip the random generator")
    found.add_argument("--height", type=int, default=480)
    found.add_argument("--width", type=int, default=720)
    found.add_argument("--threads", type=int, default=2)
    found.add_argument("--out", default=RESULTS)
    return found


def add_data_flag(cli: argparse.ArgumentParser, required: bool = True) -> None:
    """Adds `--data DIR`: the folder holding `real_raindrops/` and `raindrop_pairs/`."""
    cli.add_argument(
        "--data",
        required=required,
        metavar="DIR",
        help="the data folder: real_raindrops/case1.jpg, real_raindrops/case2.jpg and "
        "raindrop_pairs/data/0_rain.png under it",
    )


def tf_threads(threads: int):
    """TensorFlow with `threads` threads inside an op and one op at a time; returns `tf`."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def compared_generators(
    weights: str | None, random: bool, random_first: bool = False
) -> list[tuple[str, object]]:
    """`(label, generator)`: the trained one at `weights` and He-initialised random weights.

    The random generator (seed 0) goes through the authors' checkpoint
    format (`random_checkpoint`). A label names the weights' file, not its folder.
    """
    found = []
    if weights:
        from tf_deraindrop.inference.loading import load_generator

        found.append((f"trained ({os.path.basename(weights)})", load_generator(weights)))
    if random:
        from tf_deraindrop.official.checkpoint import import_official_checkpoint

        with tempfile.TemporaryDirectory() as folder:
            path = random_checkpoint(folder, seed=0)
            found.append(("random (He init, seed 0)", import_official_checkpoint(path)))
    return found[::-1] if random_first else found


def random_checkpoint(folder: str, seed: int = 0) -> str:
    """A random He-initialised generator in the authors' format, `folder/gen.pkl`; its path."""
    from reference.torch_generator import save_random_checkpoint

    path = os.path.join(folder, "gen.pkl")
    save_random_checkpoint(path, seed=seed)
    return path


def read_photos(data: str, names) -> list:
    """The photos `names` (paths under the data folder `data`), float32 in [0, 1]."""
    from tf_deraindrop.utils.images import read_image

    return [read_image(os.path.join(data, name)) for name in names]


def tflite_psnr(model: bytes, folder: str, generator, images, threads: int) -> list[float]:
    """PSNR of a `.tflite`'s output against the Keras generator's, per image (both clipped).

    The model is written as `folder/model.tflite` to run.
    """
    import numpy as np

    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.metrics import psnr

    path = os.path.join(folder, "model.tflite")
    with open(path, "wb") as f:
        f.write(model)
    derainer = LiteDerainer(path, threads=threads)
    found = []
    for image in images:
        expected = np.asarray(generator(image[None], training=False)["outputs"][-1])[0]
        found.append(psnr(np.clip(derainer.run_tile(image), 0, 1), np.clip(expected, 0, 1)))
    return found


def median_time(run, repeats: int, warmup: int) -> float:
    """The median seconds of `repeats` timed calls of `run` (the upper one of an even count)."""
    from tf_deraindrop.export.benchmark import time_runs

    times = sorted(time_runs(run, warmup, repeats))
    return times[len(times) // 2]


def generator_macs(height: int, width: int) -> int:
    """Multiply-adds of one generator forward pass, layer by layer.

    The layers are those of docs/architecture.md, sections 2 and 3.
    """
    full, half, quarter = height * width, height * width // 4, height * width // 16
    arn = (4 * 32 * 9 + 10 * 32 * 32 * 9 + 4 * 64 * 32 * 9 + 32 * 9) * full
    arn = 4 * arn  # counted as the authors' code runs it, zero state included
    ae = 4 * 64 * 25 * full
    ae += (64 * 128 * 9 + 128 * 128 * 9) * half
    ae += (128 * 256 * 9 + 2 * 256 * 256 * 9 + 4 * 256 * 256 * 9 + 2 * 256 * 256 * 9) * quarter
    ae += 256 * 3 * 9 * quarter
    ae += 256 * 128 * 16 * quarter  # transposed conv: every input pixel meets 4x4 taps
    ae += (128 * 128 * 9 + 128 * 3 * 9) * half
    ae += 128 * 64 * 16 * half
    ae += (64 * 32 * 9 + 32 * 3 * 9) * full
    return arn + ae


_MATMUL = """
import time, numpy as np
n = {n}
a = np.random.default_rng(0).random((n, n), dtype=np.float32)
b = a.copy()
for _ in range(2):
    a @ b
best = float("inf")
for _ in range({repeats}):
    start = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - start)
print(2 * n**3 / best / 1e9)
"""


def numpy_matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """float32 GEMM rate of numpy, best of `repeats`, in a fresh process.

    A fresh process keeps TensorFlow's and PyTorch's thread pools, loaded in
    this one, from competing with numpy's BLAS threads.
    """
    out = subprocess.run(
        [sys.executable, "-c", _MATMUL.format(n=n, repeats=repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def read_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """The scalar summaries of a TensorBoard log folder: `{tag: [(step, value), ...]}`.

    Summaries that are not one number (images, text) are left out.
    """
    import tensorflow as tf

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if array.dtype != object and array.size == 1:
                    found.setdefault(value.tag, []).append((event.step, float(array)))
    return found


class Report:
    """A benchmark's lines: printed as they come, all written to a file at the end.

    Example:
        >>> report = Report()  # doctest: +SKIP
        >>> report.say("int8 at 480 x 720", "")  # doctest: +SKIP
        >>> report.section("random (He init, seed 0):")  # doctest: +SKIP
        >>> report.say("  converter 16.6 s per sample")  # doctest: +SKIP
        >>> report.write("benchmarks/results", "x_cpu.txt", "tensorflow 2.21.0")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, *lines: str) -> None:
        """Prints `lines` and keeps them for the file."""
        print("\n".join(lines), flush=True)
        self.lines.extend(lines)

    def section(self, title: str) -> None:
        """Says `title`, after a blank line in the file where the last line is not one."""
        self._blank_line()
        self.say(title)

    def write(self, folder: str, name: str, footer: str) -> None:
        """Writes the lines and, after a blank line, `footer` to `folder/name`; says so."""
        from tf_deraindrop.utils.files import write_text_atomically

        self._blank_line()
        self.lines.append(footer)
        out = os.path.join(folder, name)
        write_text_atomically(out, "\n".join(self.lines) + "\n")
        print(f"wrote {out}")

    def save(self, path: str | None) -> None:
        """Writes the lines to `path` as they are (nothing when `path` is None)."""
        if path:
            from tf_deraindrop.utils.files import write_text_atomically

            write_text_atomically(path, "\n".join(self.lines) + "\n")

    def _blank_line(self) -> None:
        if self.lines and self.lines[-1]:
            self.lines.append("")
