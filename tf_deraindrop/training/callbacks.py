"""Keras callbacks of a training run: TensorBoard, checkpoints, the best generator, NaN stop.

The callbacks live for the whole run, across the several `fit` calls of
`tf_deraindrop.training.run` (one per epoch, see there), and count steps with the
model's `global_step` rather than Keras' batch index, which restarts with
every epoch and every resumed run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from tf_deraindrop.models.dtype import float32_generator
from tf_deraindrop.utils.files import atomic_path
from tf_deraindrop.utils.images import write_image
from tf_deraindrop.utils.visualize import make_panel


def _step(model) -> int:
    return int(model.global_step.numpy())


def export_generator(generator: keras.Model, path: str | os.PathLike) -> None:
    """Saves a float32 copy of `generator` as a `.keras` file, atomically.

    A mixed-precision generator is exported in float32 so that the file runs
    at full speed on CPUs and converts cleanly to TFLite.
    """
    copy = float32_generator(generator, copy=True)
    try:
        with atomic_path(path) as tmp:
            copy.save(tmp)
    except OSError as err:
        raise ModelWriteError(
            f"could not write the generator {os.fspath(path)}: {err.strerror or err}; nothing "
            "partial was left. Free some space and run the same command again (the "
            "checkpoints are kept)."
        ) from err


class ModelWriteError(OSError):
    """The generator's `.keras` file could not be written; the message names it and why."""


class BestGeneratorSaver(keras.callbacks.Callback):
    """Exports the generator with the best validation PSNR so far.

    The record (`best.json` beside the model) survives a resumed run.

    Args:
        path: the `.keras` file to write.
        monitor: the log to maximise.
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_psnr"):
        super().__init__()
        self.path = os.fspath(path)
        self.monitor = monitor
        self.record_path = os.path.join(os.path.dirname(self.path) or ".", "best.json")
        self.best = -math.inf
        if os.path.isfile(self.record_path) and os.path.isfile(self.path):
            with open(self.record_path, encoding="utf-8") as f:
                self.best = float(json.load(f).get(monitor, -math.inf))

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) <= self.best:
            return
        self.best = float(value)
        export_generator(self.model.generator, self.path)
        record = {self.monitor: self.best, "step": _step(self.model)}
        with atomic_path(self.record_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes scalars, image panels and the configuration for TensorBoard.

    Scalars (tags `loss/<term>`, `optimizer/<name>`, `validation/psnr|ssim`)
    every `log_every` steps; the training losses are Keras' running means
    over the current epoch, as the progress bar shows them. Every
    `image_every` steps, an image panel of `sample` (rainy | A_1..A_4 as heat
    maps | output | clean), also written as a PNG under `samples_dir`.

    Args:
        log_dir: the TensorBoard log directory (`OUT/logs`).
        sample: a fixed `(rainy, clean)` batch of a few examples.
        samples_dir: where the PNG panels go (`OUT/samples`), or None.
        config: the run's resolved configuration, written once as text.
        log_every: steps between scalar writes.
        image_every: steps between image panels.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        sample: tuple[np.ndarray, np.ndarray] | None = None,
        samples_dir: str | os.PathLike | None = None,
        config: Mapping | None = None,
        log_every: int = 10,
        image_every: int = 200,
    ):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.fspath(log_dir))
        self.sample = sample
        self.samples_dir = os.fspath(samples_dir) if samples_dir else None
        self.config = config
        self.log_every = int(log_every)
        self.image_every = int(image_every)
        self.last_panel: str | None = None
        self._last_image_step: int | None = None

    @staticmethod
    def _tag(name: str) -> str:
        if name.startswith("val_"):
            return f"validation/{name[4:]}"
        if name.endswith("_lr") or name.endswith("_loss_scale"):
            return f"optimizer/{name}"
        return f"loss/{name}"

    def _scalars(self, logs: Mapping, step: int, keep=lambda name: True):
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                if keep(name):
                    tf.summary.scalar(self._tag(name), float(value))

    def on_train_begin(self, logs=None):
        if self.config is not None:
            text = (
                "```\n" + json.dumps(self.config, indent=2, sort_keys=True, default=str) + "\n```"
            )
            with self.writer.as_default(step=_step(self.model)):
                tf.summary.text("config", text)
            self.config = None  # once per run, not once per fit call
            self.writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if step % self.log_every == 0 and logs:
            self._scalars(logs, step, keep=lambda n: not n.startswith("val_"))
        if step % self.image_every == 0:
            self.write_panel(step)

    def on_epoch_end(self, epoch, logs=None):
        if logs:
            self._scalars(logs, _step(self.model), keep=lambda n: n.startswith("val_"))
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.write_panel(_step(self.model))
        self.writer.flush()

    #: The panel's TensorBoard tag and description (a subclass drawing another panel sets its own).
    PANEL_TAG = "panels/rainy_A1-A4_output_clean"
    PANEL_DESCRIPTION = (
        "Rows: examples. Columns: rainy input, attention maps A1..A4 "
        "(heat maps, clipped to [0, 1]), generator output, clean target."
    )

    def render_panel(self) -> np.ndarray:
        """The panel of the sample batch: the generator run on it now."""
        rainy, clean = self.sample
        result = self.model.generator(rainy, training=False)
        return make_panel(rainy, result["attention"], result["outputs"][-1], clean)

    def write_panel(self, step: int) -> str | None:
        """Runs the generator on the sample batch; logs and saves the panel."""
        if self.sample is None or step == self._last_image_step:
            return None
        self._last_image_step = step
        panel = self.render_panel()
        with self.writer.as_default(step=step):
            tf.summary.image(
                self.PANEL_TAG, panel[None], step=step, description=self.PANEL_DESCRIPTION
            )
        if self.samples_dir:
            path = os.path.join(self.samples_dir, f"step_{step:08d}.png")
            write_image(path, panel)
            latest = os.path.join(self.samples_dir, "latest.png")
            with atomic_path(latest) as tmp:
                shutil.copyfile(path, tmp)
            self.last_panel = latest
        return self.last_panel

    def close(self):
        self.writer.close()


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar: epochs numbered over the whole run, and the few numbers people watch.

    Each epoch is its own `fit` call (see `tf_deraindrop.training.run`), which
    alone would print "Epoch 1/1" every time. Of the dozen logged values the
    bar shows only `SHOWN` (and the validation PSNR); TensorBoard has them all.

    Args:
        total_epochs: epochs of the whole run.
    """

    SHOWN = ("g_total", "d_total", "multiscale", "val_psnr")

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = int(total_epochs)

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs

    def _shown(self, logs):
        return {k: v for k, v in (logs or {}).items() if k in self.SHOWN}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._shown(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._shown(logs))
