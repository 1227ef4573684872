"""What the generator benchmarks share: flags, the photos, the generators compared, the report.

A benchmark run as a script puts the repository on `sys.path`, then imports
this module as `benchmarks.bench_common`. Nothing here imports TensorFlow at
the top: `bench_precision_jax.py` runs where TensorFlow is absent.
"""

from __future__ import annotations

import argparse
import os

from tf_deraindrop.export.benchmark import time_runs

__all__ = [
    "DATA",
    "HELD_OUT",
    "RAINY",
    "RESULTS",
    "Report",
    "compared_generators",
    "median_time",
    "parser",
    "read_photos",
    "tflite_psnr",
    "tf_threads",
    "time_runs",
]

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "..", "shared", "data")
RESULTS = os.path.join(ROOT, "benchmarks", "results")

#: The rainy photos the int8 benchmarks calibrate and fine-tune on (under
#: `DATA`), and the one they hold out for scoring.
RAINY = ("real_raindrops/case1.jpg", "raindrop_pairs/data/0_rain.png")
HELD_OUT = "real_raindrops/case2.jpg"


def parser(
    doc: str, weights_help: str = "a trained generator (.keras)", no_random: bool = True
) -> argparse.ArgumentParser:
    """The flags of a benchmark comparing generators at 480 x 720 on 2 threads.

    `--weights`, `--no-random` (unless `no_random` is false), `--height`,
    `--width`, `--threads` and `--out` (the results folder); the caller adds its own.
    """
    found = argparse.ArgumentParser(description=doc.splitlines()[0])
    found.add_argument("--weights", help=weights_help)
    if no_random:
        found.add_argument("--no-random", action="store_true", help="skip the random generator")
    found.add_argument("--height", type=int, default=480)
    found.add_argument("--width", type=int, default=720)
    found.add_argument("--threads", type=int, default=2)
    found.add_argument("--out", default=RESULTS)
    return found


def tf_threads(threads: int):
    """TensorFlow with `threads` threads inside an op and one op at a time; returns `tf`."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def compared_generators(
    weights: str | None, random: bool, name: str, random_first: bool = False
) -> list[tuple[str, object]]:
    """`(label, generator)`: the trained one at `weights` and He-initialised random weights.

    The random generator (seed 0) goes through the authors' checkpoint
    format, saved as `/tmp/<name>_gen.pkl`.
    """
    found = []
    if weights:
        from tf_deraindrop.inference.keras import load_generator

        found.append((f"trained ({weights})", load_generator(weights)))
    if random:
        from reference.torch_generator import save_random_checkpoint
        from tf_deraindrop.official.checkpoint import import_official_checkpoint

        path = f"/tmp/{name}_gen.pkl"
        save_random_checkpoint(path, seed=0)
        found.append(("random (He init, seed 0)", import_official_checkpoint(path)))
    return found[::-1] if random_first else found


def read_photos(names) -> list:
    """The photos `names` (paths under `DATA`), float32 in [0, 1]."""
    from tf_deraindrop.utils.images import read_image

    return [read_image(os.path.join(DATA, name)) for name in names]


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
    times = sorted(time_runs(run, warmup, repeats))
    return times[len(times) // 2]


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
