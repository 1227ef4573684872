"""Checkpoints that a run can always resume from: health records, NaN roll-back, damage fallback.

A checkpoint is *confirmed* once the `window` steps after it stayed finite
and free of loss spikes: a checkpoint saved just before a blow-up already
holds the blown-up weights and Adam moments, although the losses logged up
to it looked fine. After a NaN stop, the next resume rolls back to the newest
confirmed checkpoint and sets the later ones aside in `checkpoints/rejected/`.

A checkpoint that cannot be read (a truncated data file, say) is set aside
in `checkpoints/damaged/` with a warning, and the run resumes from the newest
one that reads. Nothing is deleted: both folders are left for inspection.

The records live in `checkpoints/health.json`:
`{"confirmed": [steps], "pending": [steps],
"nan_stop": {"step", "last_sane", "again_from"} | null, "rolled_back_to": step | null}`.
`rolled_back_to` is the step a resume after a NaN stop started from (0: from
scratch) until a newer checkpoint is confirmed; a NaN stop before that is
recorded with `again_from`: the settings (a learning rate, say) are at fault,
and the confirmed checkpoints stay confirmed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import shutil
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_deraindrop.utils.files import atomic_path

HEALTH_FILE = "health.json"
#: Per-step losses watched for spikes: image reconstruction terms, bounded for a sane generator.
SPIKE_KEYS = ("multiscale", "attention")
#: A step is a spike when a watched loss exceeds this many times its recent median...
SPIKE_FACTOR = 20.0
#: ... and this absolute value (MSE of [0, 1] images stays far below it while training works).
SPIKE_FLOOR = 1.0


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions); names the file and the reason."""


class ResumeError(RuntimeError):
    """No checkpoint of the run can be read; the message says what to do."""


def _reason(err: Exception) -> str:
    """The human part of an OS or TensorFlow error: `File too large`, `No space left ...`."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror} ({err.filename})" if err.filename else err.strerror
    text = (getattr(err, "message", None) or str(err)).splitlines()[0]
    text = text.rsplit("}} ", 1)[-1].split(" [Op:", 1)[0]
    return text or type(err).__name__


def _step(model) -> int:
    return int(model.global_step.numpy())


class Health:
    """The `health.json` record of a checkpoint folder."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, HEALTH_FILE)
        self.values: dict = {
            "confirmed": [],
            "pending": [],
            "nan_stop": None,
            "rolled_back_to": None,
        }
        if os.path.isfile(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    self.values.update(json.load(f))
            except (OSError, ValueError) as err:
                print(f"WARNING: ignoring unreadable {self.path} ({err}).", file=sys.stderr)

    def __getitem__(self, key):
        return self.values[key]

    def __setitem__(self, key, value):
        self.values[key] = value

    def write(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.values, f, indent=1)


class LossWatch(keras.callbacks.Callback):
    """Stops on a NaN or infinite loss and tells sane steps from spikes.

    Keras logs running means over the epoch; each step's own value is
    recovered from two successive means, so a spike shows at its step.

    Args:
        keys: losses that stop the run when not finite.
        spike_keys: losses watched for spikes (see `SPIKE_FACTOR`, `SPIKE_FLOOR`).
        history: recent sane values kept for the median.
    """

    def __init__(
        self,
        keys: Sequence[str] = ("g_total", "d_total"),
        spike_keys: Sequence[str] = SPIKE_KEYS,
        history: int = 50,
    ):
        super().__init__()
        self.keys, self.spike_keys = tuple(keys), tuple(spike_keys)
        self.stopped_at: int | None = None
        self.last_sane: int | None = None
        self.sane = True
        self._recent = {k: deque(maxlen=history) for k in self.spike_keys}
        self._previous_means: dict[str, float] = {}

    def on_epoch_begin(self, epoch, logs=None):
        self._previous_means = {}

    def _step_values(self, batch: int, logs: Mapping) -> dict[str, float]:
        values = {}
        for key in self.spike_keys:
            if key in logs:
                mean = float(logs[key])
                previous = self._previous_means.get(key)
                values[key] = mean if previous is None else (batch + 1) * mean - batch * previous
                self._previous_means[key] = mean
        return values

    def _spiking(self, values: Mapping[str, float]) -> bool:
        for key, value in values.items():
            recent = self._recent[key]
            limit = max(SPIKE_FLOOR, SPIKE_FACTOR * float(np.median(recent))) if recent else None
            if not math.isfinite(value) or (limit is not None and value > limit):
                return True
        return False

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        step = _step(self.model)
        finite = all(math.isfinite(float(logs[k])) for k in self.keys if k in logs)
        values = self._step_values(batch, logs)
        self.sane = finite and not self._spiking(values)
        if self.sane:
            self.last_sane = step
            for key, value in values.items():
                self._recent[key].append(value)
        if self.stopped_at is None and not finite:
            self.stopped_at = step
            shown = ", ".join(f"{k}={float(logs[k]):.4g}" for k in self.keys if k in logs)
            print(f"\nLoss is not finite at step {step} ({shown}); stopping.", file=sys.stderr)
            self.model.stop_training = True


class CheckpointSaver(keras.callbacks.Callback):
    """Saves the training state every N steps and at the end of every `fit` call.

    Nothing is saved during a loss spike, after a NaN stop, or with a weight
    that is not finite. Each saved checkpoint becomes confirmed in
    `health.json` once the `window` steps after it were sane; a NaN stop is
    recorded there too, for the next resume to roll back. TensorFlow writes
    the checkpoint files before the `checkpoint` index, so a run killed
    mid-save still finds the previous checkpoint.

    Args:
        manager: the `tf.train.CheckpointManager` to save with.
        every: steps between checkpoints.
        watch: the run's `LossWatch`.
        window: sane steps after a checkpoint that confirm it (default `every`).
    """

    def __init__(
        self,
        manager: tf.train.CheckpointManager,
        every: int,
        watch: LossWatch,
        window: int | None = None,
    ):
        super().__init__()
        self.manager = manager
        self.every = int(every)
        self.watch = watch
        self.window = int(window or every)
        self.health = Health(manager.directory)
        self.last_saved: int | None = None

    def _weights_finite(self) -> bool:
        # A distillation run's model has a discriminator only with an adversarial term.
        discriminator = getattr(self.model, "discriminator", None)
        variables = list(self.model.generator.weights)
        if discriminator is not None:
            variables += discriminator.weights
        return all(
            bool(tf.reduce_all(tf.math.is_finite(v.value)).numpy())
            for v in variables
            if "float" in str(v.dtype)
        )

    def save(self) -> str | None:
        """Saves now, unless already saved at this step or the state is not sane."""
        step = _step(self.model)
        if step in (self.last_saved, 0) or self.watch.stopped_at is not None or not self.watch.sane:
            return None
        if not self._weights_finite():
            print(
                f"\nNot saving the checkpoint of step {step}: a weight is not finite.",
                file=sys.stderr,
            )
            return None
        try:
            path = self.manager.save(checkpoint_number=step)
            self.health["pending"] = sorted({*self.health["pending"], step})
            self.health.write()
        except (OSError, tf.errors.OpError) as err:
            for temp in glob.glob(os.path.join(self.manager.directory, "*_temp*")):
                shutil.rmtree(temp, ignore_errors=True)
            raise CheckpointWriteError(
                f"could not write the checkpoint of step {step} in {self.manager.directory}: "
                f"{_reason(err)}. Free some space and run the same command again to resume."
            ) from err
        self.last_saved = step
        return path

    def _confirm(self, step: int) -> None:
        pending = self.health["pending"]
        if not self.watch.sane:
            if pending:
                self.health["pending"] = []
                self.health.write()
            return
        ready = [s for s in pending if step - s >= self.window]
        if ready:
            self.health["confirmed"] = sorted({*self.health["confirmed"], *ready})
            self.health["pending"] = [s for s in pending if s not in ready]
            self.health["rolled_back_to"] = None
            self.health.write()

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        self._confirm(step)
        if self.watch.stopped_at is not None and self.health["nan_stop"] is None:
            self._record_nan_stop()
        elif step % self.every == 0:
            self.save()

    def _record_nan_stop(self) -> None:
        # Blowing up again from the checkpoint a roll-back started from (before
        # confirming anything new) says the settings are at fault, not that
        # checkpoint: it stays confirmed, and the record says so (`again_from`).
        self.health["nan_stop"] = {
            "step": self.watch.stopped_at,
            "last_sane": self.watch.last_sane,
            "again_from": self.health["rolled_back_to"],
        }
        self.health["pending"] = []
        self.health.write()

    def on_train_end(self, logs=None):
        if self.watch.stopped_at is None:
            self.save()

    def resume_point(self) -> str | None:
        """The checkpoint a resume after a NaN stop would start from (for messages)."""
        return _newest_confirmed(self.manager.directory, self.health)

    def stopped_again_from(self) -> int | None:
        """After a NaN stop: the step of the roll-back this run started from, if it was one.

        Not None means that the run blew up again from a checkpoint confirmed
        sane (0: from the start), so the settings are at fault, not the weights.
        """
        nan_stop = self.health["nan_stop"] or {}
        return nan_stop.get("again_from")


def _prefix_step(prefix: str) -> int:
    return int(prefix.rsplit("-", 1)[1])


def existing_checkpoints(directory: str) -> list[str]:
    """Checkpoint prefixes (`.../ckpt-N`) present in `directory`, oldest first.

    Read from the files themselves rather than the `checkpoint` index file, so
    that a lost or damaged index does not hide the checkpoints.
    """
    found = glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index"))
    prefixes = [path[: -len(".index")] for path in found]
    return sorted((p for p in prefixes if p.rsplit("-", 1)[1].isdigit()), key=_prefix_step)


def _newest_confirmed(directory: str, health: Health) -> str | None:
    confirmed = set(health["confirmed"])
    candidates = [p for p in existing_checkpoints(directory) if _prefix_step(p) in confirmed]
    return candidates[-1] if candidates else None


def _set_aside(prefixes: Sequence[str], directory: str, folder: str) -> None:
    target = os.path.join(directory, folder)
    os.makedirs(target, exist_ok=True)
    for prefix in prefixes:
        for path in glob.glob(prefix + ".*"):
            shutil.move(path, os.path.join(target, os.path.basename(path)))


@contextlib.contextmanager
def _tf_log_quiet():
    """TensorFlow's Python log at errors only, for the calls inside."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _index_lists(directory: str, prefixes: Sequence[str]) -> bool:
    """Whether the `checkpoint` index reads and lists `prefixes` (the manager rotates those)."""
    with _tf_log_quiet():  # a damaged index is reported below, not as a parse error
        state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return False
    listed = {os.path.basename(p) for p in state.all_model_checkpoint_paths}
    return {os.path.basename(p) for p in prefixes} <= listed


def _rewrite_index(directory: str, keep: Sequence[str]) -> None:
    """Rewrites the `checkpoint` index file to list only `keep` (newest last)."""
    if keep:
        # Timestamps after the "last preserved" one keep them in the manager's
        # rotation (older ones would be kept forever).
        stamps = [os.path.getmtime(p + ".index") for p in keep]
        with _tf_log_quiet():  # its deprecation notice, which says nothing to a user
            tf.compat.v1.train.update_checkpoint_state(
                directory,
                model_checkpoint_path=os.path.basename(keep[-1]),
                all_model_checkpoint_paths=[os.path.basename(p) for p in keep],
                all_model_checkpoint_timestamps=stamps,
                last_preserved_timestamp=min(stamps) - 1.0,
            )
    elif os.path.isfile(os.path.join(directory, "checkpoint")):
        os.remove(os.path.join(directory, "checkpoint"))


def _roll_back(directory: str, health: Health, candidates: list[str]) -> list[str]:
    """After a NaN stop: sets aside the checkpoints after the newest confirmed one."""
    nan_stop = health["nan_stop"]
    good = _newest_confirmed(directory, health)
    later = [p for p in candidates if good is None or _prefix_step(p) > _prefix_step(good)]
    _set_aside(later, directory, "rejected")
    start = (
        f"resuming from {os.path.basename(good)}, the newest checkpoint whose following steps "
        "stayed sane"
        if good
        else "no checkpoint before it was confirmed sane, so training starts again from step 0"
    )
    aside = f"; {len(later)} later checkpoint(s) set aside in {directory}/rejected" if later else ""
    print(
        f"The last run stopped on a non-finite loss at step {nan_stop['step']}: {start}{aside}.",
        file=sys.stderr,
        flush=True,
    )
    health["nan_stop"] = None
    health["pending"] = []
    health["rolled_back_to"] = _prefix_step(good) if good else 0
    health.write()
    return [p for p in candidates if p not in later]


def start_over(directory: str, health: Health | None = None) -> None:
    """A run starting from step 0 closes the record of a NaN stop that left no checkpoint.

    Left in place, the record would make a later resume roll a finished run back.
    """
    health = health or Health(directory)
    if health["nan_stop"] is None:
        return
    print(
        f"The last run stopped on a non-finite loss at step {health['nan_stop']['step']} before "
        "saving a checkpoint: training starts again from step 0.",
        file=sys.stderr,
        flush=True,
    )
    health["nan_stop"] = None
    health["pending"] = []
    health["rolled_back_to"] = 0
    health.write()


def _restore_newest_readable(checkpoint, directory: str, candidates: list[str]) -> str | None:
    """Restores the newest of `candidates` that reads; sets the unreadable newer ones aside."""
    failures = []
    for prefix in reversed(candidates):
        try:
            target = checkpoint(prefix) if callable(checkpoint) else checkpoint
            target.restore(prefix).assert_existing_objects_matched()
        except Exception as err:  # noqa: BLE001 - any failure to read means: try an older one
            failures.append((prefix, str(err).splitlines()[0] if str(err) else type(err).__name__))
            continue
        for damaged, why in failures:
            print(
                f"WARNING: checkpoint {damaged} cannot be read ({why}); resuming from "
                f"{os.path.basename(prefix)} and keeping the damaged one in {directory}/damaged.",
                file=sys.stderr,
                flush=True,
            )
        if failures:
            _set_aside([p for p, _ in failures], directory, "damaged")
            _rewrite_index(
                directory, [p for p in candidates if _prefix_step(p) <= _prefix_step(prefix)]
            )
        return prefix
    if not failures:
        return None
    listed = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in failures)
    raise ResumeError(
        f"cannot resume from {directory}: no checkpoint can be read ({listed}). "
        "Was --crop-size, --precision or the model changed? Use another --out-dir for a "
        "new run, or move the checkpoints folder away to start this one again."
    )


def restore_run(
    checkpoint: tf.train.Checkpoint | Callable[[str], tf.train.Checkpoint], directory: str
) -> str | None:
    """Restores the newest usable checkpoint of `directory` into `checkpoint`.

    `checkpoint` is a `tf.train.Checkpoint`, or a function of a checkpoint's
    prefix giving the one that matches its layout.

    After a NaN stop, that is the newest confirmed checkpoint (later ones go
    to `rejected/`); otherwise the newest one. A checkpoint that cannot be
    read goes to `damaged/` with a warning, and the one before it is tried.

    Returns:
        The restored checkpoint's prefix, or None when there is nothing to
        restore (then the run starts from scratch).

    Raises:
        ResumeError: checkpoints exist but none of them can be read.
    """
    health = Health(directory)
    candidates = existing_checkpoints(directory)
    if not candidates and health["nan_stop"] is not None:
        start_over(directory, health)
    elif candidates and health["nan_stop"] is not None:
        kept = _roll_back(directory, health, candidates)
        if len(kept) < len(candidates):
            _rewrite_index(directory, kept)
        candidates = kept
    restored = _restore_newest_readable(checkpoint, directory, candidates)
    if restored is not None:
        kept = [p for p in candidates if _prefix_step(p) <= _prefix_step(restored)]
        if not _index_lists(directory, kept):
            # Unlisted checkpoints would never be rotated out.
            print(
                f"WARNING: the checkpoint index {os.path.join(directory, 'checkpoint')} is "
                "missing or damaged; rebuilt it from the checkpoint files.",
                file=sys.stderr,
                flush=True,
            )
            _rewrite_index(directory, kept)
    return restored
