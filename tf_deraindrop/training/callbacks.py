"""Keras callbacks of a training run: TensorBoard, checkpoints, the best generator, NaN stop.

The callbacks live for the whole run, across the several `fit` calls of
`tf_deraindrop.train` (one per epoch, see there), and count steps with the
model's `global_step` rather than Keras' batch index, which restarts with
every epoch and every resumed run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_deraindrop.images import write_image

#: Anchor colours of the heat maps (low to high): black, purple, red, orange, pale yellow.
_HEAT_ANCHORS = (
    np.array([[0, 0, 0], [85, 15, 110], [190, 40, 70], [250, 140, 20], [252, 255, 164]], np.float32)
    / 255.0
)


def heat_map(values: np.ndarray) -> np.ndarray:
    """Colours a map `(H, W)` or `(H, W, 1)` clipped to [0, 1]: float RGB `(H, W, 3)`.

    The attention maps have no sigmoid (docs/architecture.md, section 2), so values outside
    [0, 1] are clipped for display.
    """
    x = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0)
    x = x.reshape(x.shape[0], x.shape[1])
    position = x * (len(_HEAT_ANCHORS) - 1)
    low = np.minimum(np.floor(position).astype(int), len(_HEAT_ANCHORS) - 2)
    frac = (position - low)[..., None]
    return _HEAT_ANCHORS[low] * (1.0 - frac) + _HEAT_ANCHORS[low + 1] * frac


def make_panel(rainy, attention_maps: Sequence, derained, clean, gap: int = 2) -> np.ndarray:
    """One row per example: rainy | A_1 ... A_N (heat maps) | output | clean.

    Args:
        rainy, derained, clean: `(B, H, W, 3)` float in [0, 1] (output is clipped).
        attention_maps: `[A_1, ..., A_N]`, each `(B, H, W, 1)`.
        gap: white pixels between tiles and rows.

    Returns:
        float32 RGB `(B * H + gaps, (N + 3) * W + gaps, 3)` in [0, 1].
    """
    rainy, derained, clean = (
        np.clip(np.nan_to_num(np.asarray(a, np.float32)), 0, 1) for a in (rainy, derained, clean)
    )
    maps = [np.asarray(a) for a in attention_maps]
    rows = []
    for i in range(rainy.shape[0]):
        tiles = [rainy[i], *[heat_map(a[i]) for a in maps], derained[i], clean[i]]
        h = tiles[0].shape[0]
        spacer = np.ones((h, gap, 3), np.float32)
        row = [tiles[0]]
        for tile in tiles[1:]:
            row += [spacer, tile]
        rows.append(np.concatenate(row, axis=1))
    spacer = np.ones((gap, rows[0].shape[1], 3), np.float32)
    out = [rows[0]]
    for row in rows[1:]:
        out += [spacer, row]
    return np.concatenate(out, axis=0)


def _step(model) -> int:
    return int(model.global_step.numpy())


def _finite(logs: Mapping | None, keys: Sequence[str]) -> bool:
    logs = logs or {}
    return all(math.isfinite(float(logs[k])) for k in keys if k in logs)


class NaNGuard(keras.callbacks.Callback):
    """Stops training when a loss becomes NaN or infinite.

    The loss values in the logs are Keras' running means over the epoch, so
    a non-finite step anywhere in the epoch shows. `stopped_at` holds the
    step; the checkpoint callback then saves nothing more, so the last
    checkpoint is the last good state.

    Args:
        keys: the logged losses to watch.
    """

    def __init__(self, keys: Sequence[str] = ("g_total", "d_total")):
        super().__init__()
        self.keys = tuple(keys)
        self.stopped_at: int | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self.stopped_at is None and not _finite(logs, self.keys):
            self.stopped_at = _step(self.model)
            values = ", ".join(f"{k}={float(logs[k]):.4g}" for k in self.keys if k in logs)
            print(
                f"\nLoss is not finite at step {self.stopped_at} ({values}); stopping.",
                file=sys.stderr,
            )
            self.model.stop_training = True


class CheckpointSaver(keras.callbacks.Callback):
    """Saves the training state with a `tf.train.CheckpointManager` every N steps.

    Also at the end of every epoch (every `fit` call). Nothing is saved once
    the NaN guard has fired or when a weight is not finite, so the last
    checkpoint stays the last good one. TensorFlow writes the checkpoint's
    files before it updates the `checkpoint` index file, so a run killed
    mid-save still finds the previous checkpoint.

    Args:
        manager: the `tf.train.CheckpointManager` to save with.
        every: steps between checkpoints.
        nan_guard: the run's `NaNGuard`, or None.
    """

    def __init__(
        self, manager: tf.train.CheckpointManager, every: int, nan_guard: NaNGuard | None = None
    ):
        super().__init__()
        self.manager = manager
        self.every = int(every)
        self.nan_guard = nan_guard
        self.last_saved: int | None = None

    def _weights_finite(self) -> bool:
        variables = self.model.generator.weights + self.model.discriminator.weights
        return bool(
            all(
                tf.reduce_all(tf.math.is_finite(v.value)).numpy()
                for v in variables
                if "float" in str(v.dtype)
            )
        )

    def save(self) -> str | None:
        """Saves now (unless already saved at this step or the state is bad)."""
        step = _step(self.model)
        if step == self.last_saved or step == 0:
            return None
        if self.nan_guard is not None and self.nan_guard.stopped_at is not None:
            return None
        if not self._weights_finite():
            print(
                f"\nNot saving the checkpoint of step {step}: a weight is not finite.",
                file=sys.stderr,
            )
            return None
        path = self.manager.save(checkpoint_number=step)
        self.last_saved = step
        return path

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) % self.every == 0:
            self.save()

    def on_train_end(self, logs=None):
        self.save()


def export_generator(generator: keras.Model, path: str | os.PathLike) -> None:
    """Saves a float32 copy of `generator` as a `.keras` file, atomically.

    A mixed-precision generator is exported in float32 so that the file runs
    at full speed on CPUs and converts cleanly to TFLite.
    """
    path = os.fspath(path)
    config = generator.get_config()
    config["dtype"] = "float32"
    copy = type(generator).from_config(config)
    copy.build((None, None, None, 3))
    copy.set_weights(generator.get_weights())
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.partial.keras")
    copy.save(tmp)
    os.replace(tmp, path)


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
        tmp = f"{self.record_path}.partial"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, self.record_path)


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

    def write_panel(self, step: int) -> str | None:
        """Runs the generator on the sample batch; logs and saves the panel."""
        if self.sample is None or step == self._last_image_step:
            return None
        self._last_image_step = step
        rainy, clean = self.sample
        result = self.model.generator(rainy, training=False)
        panel = make_panel(rainy, result["attention"], result["outputs"][-1], clean)
        with self.writer.as_default(step=step):
            tf.summary.image(
                "panels/rainy_A1-A4_output_clean",
                panel[None],
                step=step,
                description="Rows: examples. Columns: rainy input, attention maps A1..A4 "
                "(heat maps, clipped to [0, 1]), generator output, clean target.",
            )
        if self.samples_dir:
            path = os.path.join(self.samples_dir, f"step_{step:08d}.png")
            write_image(path, panel)
            latest = os.path.join(self.samples_dir, "latest.png")
            tmp = os.path.join(self.samples_dir, ".latest.partial.png")
            shutil.copyfile(path, tmp)
            os.replace(tmp, latest)
            self.last_panel = latest
        return self.last_panel

    def close(self):
        self.writer.close()


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs out of the whole run.

    Each epoch is its own `fit` call (see `tf_deraindrop.train`), which alone
    would print "Epoch 1/1" every time.
    """

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = int(total_epochs)

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs
