"""Shared by the training tests: tiny datasets on disk, the run command, event files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
#: Crop of the training tests: the smallest size both networks take comfortably.
CROP = 32


def make_pairs(root: str | os.PathLike, count: int = 4, size: int = 40, seed: int = 0) -> str:
    """Writes `count` rainy/clean pairs of `size` x `size` in the Raindrop layout."""
    rng = np.random.default_rng(seed)
    root = os.fspath(root)
    for sub in ("data", "gt"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for k in range(count):
        ramp = np.linspace(40, 200, size)
        clean = np.stack([ramp[None, :] + 0 * yy, ramp[:, None] + 0 * xx, 120 + 0 * xx], -1)
        clean = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
        rainy = clean.astype(np.int32)
        for _ in range(3):
            cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(3, 7)
            drop = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            rainy[drop] = np.minimum(rainy[drop] + 70, 255)
        Image.fromarray(rainy.astype(np.uint8)).save(os.path.join(root, "data", f"{k}_rain.png"))
        Image.fromarray(clean).save(os.path.join(root, "gt", f"{k}_clean.png"))
    return root


#: `small_run_flags` overrides that train the smallest student instead of the paper's
#: generator: for tests of a run's bookkeeping (checkpoints, NaN records, locks,
#: strategies), which is the same for every generator, at a fraction of the tracing time.
NANO_STUDENT = {"generator": "lite", "lite-preset": "nano"}


def as_flags(values: dict) -> list[str]:
    """`{"steps": 4, "g-lr": 1e4}` -> `["--steps", "4", "--g-lr", "10000.0"]`."""
    return [part for key, value in values.items() for part in (f"--{key}", str(value))]


def small_run_flags(data_dir, out_dir, **overrides) -> list[str]:
    """`train` flags of a tiny run (crop `CROP`, checkpoint every 2 steps, no VGG) plus `overrides`.

    Overrides are keyed by flag name without the dashes: `small_run_flags(d, o, steps=4,
    **{"g-lr": 1e4})`.
    """
    values = {
        "crop-size": CROP,
        "val-fraction": 0.25,
        "checkpoint-every": 2,
        "vgg-weights": "none",
        **overrides,
        "data-dir": data_dir,
        "out-dir": out_dir,
    }
    return as_flags(values)


def env(**extra: str) -> dict[str, str]:
    """The environment of a child process: quiet TensorFlow, the repo importable."""
    values = dict(os.environ)
    values.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    values.update(extra)
    return values


def train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tf_deraindrop.train", *args]


def run_train(*args: str, timeout: float = 240, **extra_env: str) -> subprocess.CompletedProcess:
    """Runs the training CLI to completion (bounded in time)."""
    return subprocess.run(
        train_command(*args),
        cwd=REPO,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_events(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, object]]]:
    """Every summary in a TensorBoard log folder: `{tag: [(step, value), ...]}`.

    Scalars come back as floats, images as their encoded PNG strings, text as str.
    """
    import tensorflow as tf

    found: dict[str, list[tuple[int, object]]] = {}
    for path in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if array.dtype == object:
                    item = [v for v in array.ravel()]
                    item = item[0].decode() if len(item) == 1 else item
                else:
                    item = float(array)
                found.setdefault(value.tag, []).append((event.step, item))
    return found


def kill_at_first_checkpoint(command: list[str], out_dir: str | os.PathLike, timeout: float = 180):
    """Runs `command` and kills it with SIGKILL once `out_dir` holds its first checkpoint."""
    import signal
    import time

    index = os.path.join(os.fspath(out_dir), "checkpoints", "checkpoint")
    process = subprocess.Popen(
        command, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while not (os.path.isfile(index) and "ckpt-" in open(index).read()):
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, f"no checkpoint within {timeout:.0f} s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)


def checkpoint_steps(out_dir: str | os.PathLike) -> list[int]:
    """The steps of the checkpoints a run in `out_dir` kept, oldest first."""
    from tf_deraindrop.training.checkpoints import existing_checkpoints

    return [int(p.rsplit("-", 1)[1]) for p in existing_checkpoints(f"{out_dir}/checkpoints")]
