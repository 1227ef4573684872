"""One distillation run: teacher -> inputs -> student -> callbacks -> the epoch loop.

A run keeps `train`'s conventions and reuses its parts: one run per out-dir
(`RunLock`), `config.json`, checkpoints that resume after `kill -9`
(`CheckpointSaver`, `restore_run`; each epoch's crops are drawn again from
the seed and skipped up to the step), TensorBoard scalars and panels, the
epoch loop (`training.run.fit_epochs`), and `generator.keras`: the student
with the best validation PSNR against the teacher.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tf_deraindrop.training import callbacks as cb
from tf_deraindrop.training.checkpoints import CheckpointSaver, LossWatch
from tf_deraindrop.training.distill.callbacks import DistillLogger, DistillProgress, Validation
from tf_deraindrop.training.distill.config import DistillConfig, DistillError
from tf_deraindrop.training.distill.inputs import DistillInputs
from tf_deraindrop.training.distill.model import Distiller
from tf_deraindrop.training.distill.teacher import load_teacher, teacher_in
from tf_deraindrop.utils.generator_data import stop_on_interrupt


@dataclasses.dataclass
class DistillResult:
    """What a run did and where it put things."""

    out_dir: str
    start_step: int
    step: int
    generator_path: str | None
    history: dict[str, list[float]]
    seconds_per_step: float | None
    stopped_on_nan: bool = False


def build_distiller(config: DistillConfig, paired: bool, teacher) -> Distiller:
    """The compiled `Distiller`: a new student, and a discriminator / VGG16 / adapters if weighted.

    Args:
        teacher: the teacher run on the fly, or None when the batches bring its outputs.

    Raises:
        DistillError: the VGG16 weights of the perceptual term cannot be had, or the
            feature term is asked for without a teacher on the fly.
    """
    from tf_deraindrop.models import Discriminator, LiteGenerator
    from tf_deraindrop.training.build import learning_rate
    from tf_deraindrop.training.distribute import precision_policy

    student = LiteGenerator.from_preset(config.preset)
    adapters = None
    if config.feature_weight:
        if teacher is None:
            raise DistillError("--feature-weight: needs the teacher on the fly, not cached")
        from tf_deraindrop.training.distill.features import FeatureAdapters

        adapters = FeatureAdapters.between(student, teacher)  # the student built first
    discriminator = d_optimizer = None
    if config.gan_weight:
        with precision_policy("float32"):
            discriminator = Discriminator(crop_size=config.crop_size)
        d_optimizer = keras.optimizers.Adam(config.d_lr, beta_1=0.5, name="d_adam")
    perceptual = None
    if config.perceptual_weight:
        from tf_deraindrop.losses import PerceptualLoss, VGGWeightsError

        try:
            perceptual = PerceptualLoss(weights=config.vgg_weights)
        except VGGWeightsError as err:
            raise DistillError(f"--vgg-weights {config.vgg_weights}: {err}") from err
    model = Distiller(student, teacher, discriminator, perceptual, adapters)
    optimizer = keras.optimizers.Adam(learning_rate(config.lr, config), name="adam")
    model.compile(optimizer, d_optimizer, paired=paired, **config.loss_weights())
    return model


def _restore(model: Distiller, checkpoint_dir: str) -> int:
    """Restores the newest usable checkpoint; returns the step the run starts at."""
    from tf_deraindrop.training.checkpoints import ResumeError, restore_run

    try:
        restore_run(model.checkpoint(), checkpoint_dir)
    except ResumeError as err:
        raise DistillError(str(err)) from err
    return int(model.global_step.numpy())


def _record(config, inputs: DistillInputs, teacher, model, outputs: str, start: int) -> dict:
    """The run's `config.json`: the settings and what was derived from them."""
    student = model.generator
    record = {
        "config": config.to_dict(),
        "resolved": {
            "training_frames": len(inputs.train_examples),
            "validation_frames": len(inputs.val_examples),
            "paired": inputs.paired,
            "teacher_outputs": outputs,
            "student_parameters": int(student.count_params()),
            "student_config": student.get_config(),
            "teacher_parameters": int(teacher.count_params()),
            "resumed_from_step": start,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }
    if model.feature_weight:  # name: [student channels, teacher channels]
        record["resolved"]["feature_maps"] = model.adapters.get_config()["channels"]
    return record


class _RunCallbacks:
    """The callbacks of one run (validation first: the others read its logs), and its end."""

    def __init__(self, config, inputs: DistillInputs, teacher, manager, record, total_epochs):
        out = config.out_dir
        self.watch = LossWatch(keys=("total",), spike_keys=("distill", "attention"))
        self.logger = DistillLogger(
            os.path.join(out, "logs"),
            sample=inputs.sample(teacher),
            samples_dir=os.path.join(out, "samples"),
            config=record,
            log_every=config.log_every,
            image_every=config.image_every,
        )
        self.callbacks = [
            Validation(inputs.val_examples, inputs.frames, inputs.cache),
            self.watch,
            CheckpointSaver(manager, config.checkpoint_every, self.watch),
            self.logger,
        ]
        self.generator_path = os.path.join(out, "generator.keras")
        self.best = None
        if inputs.val_examples:
            self.best = cb.BestGeneratorSaver(self.generator_path, monitor="val_psnr")
            self.callbacks.append(self.best)
        self.callbacks.append(DistillProgress(total_epochs))

    def finish(self, student) -> None:
        """Exports the final student where no best-by-validation one was written."""
        if self.watch.stopped_at is None and (
            self.best is None or not os.path.isfile(self.generator_path)
        ):
            cb.export_generator(student, self.generator_path)


def _announce(config, inputs: DistillInputs, student, start: int, outputs: str) -> None:
    print(
        f"{'Resuming' if start else 'Starting'} distillation at step {start} of "
        f"{config.steps}: {len(inputs.train_examples)} training and "
        f"{len(inputs.val_examples)} validation frames{' (pairs)' if inputs.paired else ''}, "
        f"student {config.preset} ({student.count_params():,} parameters), teacher outputs "
        f"{outputs}.",
        flush=True,
    )


def distill(config: DistillConfig, verbose: str | int = "auto") -> DistillResult:
    """Runs (or resumes) a distillation run; see the package docstring.

    Args:
        config: the settings (validated here; a seed is drawn when it has none).
        verbose: Keras' `fit` verbosity.

    Raises:
        DistillError: a bad teacher, data folder, video or setting (the message names it).
        RunLockedError, ResumeError, CheckpointWriteError: as `train`.

    Example:
        >>> result = distill(DistillConfig(teacher="gen.pkl", data_dir="footage"))  # doctest: +SKIP
    """
    from tf_deraindrop.training.config import write_json_atomic
    from tf_deraindrop.training.distribute import resolve_precision
    from tf_deraindrop.training.lock import RunLock
    from tf_deraindrop.training.run import Schedule, fit_epochs
    from tf_deraindrop.utils.files import FolderWriteError, ensure_writable_folder

    config = config.validated()
    if config.seed is None:
        config = dataclasses.replace(config, seed=int(np.random.default_rng().integers(2**31 - 1)))
    out = config.out_dir
    teacher = load_teacher(config.teacher)  # a bad teacher fails before any data work
    try:
        ensure_writable_folder(out, "--out-dir ")
    except FolderWriteError as err:
        raise DistillError(str(err)) from err
    with RunLock(out):
        keras.utils.set_random_seed(config.seed)
        inputs = DistillInputs.prepare(config, teacher)
        precision = resolve_precision(config.teacher_precision)
        outputs = "cached" if config.cache_teacher else f"on the fly ({precision})"
        # Built before the student: the twin's initializers draw from the seeded generator.
        online_teacher = None if config.cache_teacher else teacher_in(teacher, precision)
        model = build_distiller(config, inputs.paired, online_teacher)
        checkpoint_dir = os.path.join(out, "checkpoints")
        start = _restore(model, checkpoint_dir)
        manager = tf.train.CheckpointManager(
            model.checkpoint(), checkpoint_dir, max_to_keep=config.keep_checkpoints
        )
        record = _record(config, inputs, teacher, model, outputs, start)
        write_json_atomic(os.path.join(out, "config.json"), record)
        schedule = Schedule(config.steps_per_epoch, config.steps)
        run = _RunCallbacks(config, inputs, teacher, manager, record, schedule.total_epochs)
        _announce(config, inputs, model.generator, start, outputs)
        started = time.perf_counter()
        try:
            # Ctrl-C ends the crop stream's generator first: the process exits at once.
            with stop_on_interrupt(inputs.stream.source):
                history = fit_epochs(
                    model, schedule, start, run.callbacks, run.watch, verbose, inputs.train
                )
        finally:
            run.logger.close()
        step = int(model.global_step.numpy())
        elapsed = time.perf_counter() - started
        run.finish(model.generator)
    return DistillResult(
        out_dir=out,
        start_step=start,
        step=step,
        generator_path=run.generator_path if os.path.isfile(run.generator_path) else None,
        history=history,
        seconds_per_step=elapsed / (step - start) if step > start else None,
        stopped_on_nan=run.watch.stopped_at is not None,
    )


def main_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the CLI reports as bad input (exit status 2)."""
    from tf_deraindrop.training.checkpoints import CheckpointWriteError
    from tf_deraindrop.training.lock import RunLockedError

    # OSError: a write that fails on a full disk or a read-only folder (the message names it).
    return (DistillError, RunLockedError, CheckpointWriteError, OSError)
