"""One training run: strategy -> inputs -> GAN -> callbacks -> the epoch loop.

Each epoch is one `fit` call whose data stream is seeded by the run's seed and
the epoch number; a resumed run rebuilds that stream and skips the steps the
epoch had done (before decoding), so it sees the same batches as an
uninterrupted run. The command line is `tf_deraindrop.train`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import warnings
from collections.abc import Sequence

from tf_deraindrop.training.build import TrainError
from tf_deraindrop.training.config import TrainConfig, write_json_atomic

#: Epochs of a real run when neither --steps nor --epochs is given (our choice).
DEFAULT_EPOCHS = 100
DEFAULT_OUT_DIR = os.path.join("runs", "attentive_gan")


@dataclasses.dataclass
class TrainResult:
    """What a run did and where it put things."""

    out_dir: str
    start_step: int
    step: int
    stopped_on_nan: bool
    last_checkpoint: str | None
    resume_checkpoint: str | None
    generator_path: str | None
    sample_path: str | None
    perceptual: bool
    history: dict[str, list[float]]
    #: After a NaN stop: the step of the confirmed checkpoint (0: the start) that
    #: this run had rolled back to and blew up from again (then the settings are at fault).
    stopped_again_from: int | None = None


@dataclasses.dataclass
class Schedule:
    """The run's length in steps and epochs."""

    steps_per_epoch: int
    total_steps: int

    @property
    def total_epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @classmethod
    def of(cls, config: TrainConfig, n_train: int | None, global_batch: int) -> Schedule:
        steps_per_epoch = config.steps_per_epoch or max(1, n_train // global_batch)
        total = config.steps or (config.epochs or DEFAULT_EPOCHS) * steps_per_epoch
        return cls(steps_per_epoch, total)


def checkpoint_dir(out_dir: str) -> str:
    return os.path.join(out_dir, "checkpoints")


def has_checkpoint(out_dir: str) -> bool:
    """Whether `out_dir` holds a checkpoint of a run (`ckpt-N.index`)."""
    import glob

    return bool(glob.glob(os.path.join(glob.escape(checkpoint_dir(out_dir)), "ckpt-*.index")))


def run_record(config, inputs, data_dir, schedule, gan, strategy, **resolved) -> dict:
    """The run's `config.json`: the settings and what was derived from them."""
    import keras
    import tensorflow as tf

    from tf_deraindrop.training import distribute

    replicas = strategy.num_replicas_in_sync
    return {
        "config": config.to_dict(),
        "resolved": {
            "demo": config.data_dir is None,
            "data_dir": data_dir,
            "training_pairs": inputs.n_train,
            "validation_pairs": len(inputs.val_pairs),
            "strategy": distribute.strategy_name(strategy),
            "replicas": replicas,
            "global_batch_size": config.batch_size * replicas,
            "steps_per_epoch": schedule.steps_per_epoch,
            "total_steps": schedule.total_steps,
            "total_epochs": schedule.total_epochs,
            "g_optimizer": type(gan.g_optimizer).__name__,
            "d_optimizer": type(gan.d_optimizer).__name__,
            **resolved,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


def _announce(out_dir: str, start: int, schedule: Schedule, record: dict) -> None:
    r = record["resolved"]
    if start >= schedule.total_steps:
        print(
            f"The run in {out_dir} is at step {start} of {schedule.total_steps}: nothing to "
            "train. Raise --steps or --epochs to train longer.",
            flush=True,
        )
        return
    print(
        f"{'Resuming' if start else 'Starting'} training at step {start} of "
        f"{schedule.total_steps} ({schedule.total_epochs} epoch(s) of {schedule.steps_per_epoch} "
        f"steps, global batch {r['global_batch_size']}, crop {record['config']['crop_size']}, "
        f"{r['precision']}, {r['strategy']} with {r['replicas']} replica(s)); "
        f"perceptual loss {r['perceptual_loss']}.",
        flush=True,
    )


def _fit_epochs(gan, inputs, schedule: Schedule, start: int, run_callbacks, watch, verbose):
    """The epoch loop: one `fit` call per (rest of an) epoch, validating as configured."""
    import tensorflow as tf

    try:
        return _fit_epochs_unchecked(gan, inputs, schedule, start, run_callbacks, watch, verbose)
    except tf.errors.OpError as err:
        # TensorFlow's decode errors do not say which file failed.
        culprit = inputs.find_corrupt_image()
        if culprit is None:
            raise
        raise TrainError(f"{culprit} (found after: {type(err).__name__})") from err


def _fit_epochs_unchecked(gan, inputs, schedule, start, run_callbacks, watch, verbose):
    def validation(epoch: int):
        last = epoch + 1 == schedule.total_epochs
        validate = (epoch + 1) % inputs.config.val_every == 0 or last
        return inputs.validation() if validate else None

    return fit_epochs(gan, schedule, start, run_callbacks, watch, verbose, inputs.train, validation)


def fit_epochs(
    model, schedule: Schedule, start: int, callbacks, watch, verbose, train, validation=None
):
    """Trains from step `start` to the schedule's end, one `fit` call per (rest of an) epoch.

    Args:
        model: the Keras model with a `global_step`.
        callbacks: the run's callbacks, the same objects in every `fit` call.
        watch: the run's `LossWatch`; its NaN stop ends the loop.
        verbose: Keras' `fit` verbosity.
        train: `train(epoch, skip)`, the epoch's stream less its first `skip` batches.
        validation: `validation(epoch)`, the epoch's validation data or None.

    Returns:
        The logs of every epoch, `{name: [value per epoch]}`.
    """
    history: dict[str, list[float]] = {}
    epoch, skip = divmod(start, schedule.steps_per_epoch)
    while epoch < schedule.total_epochs and watch.stopped_at is None:
        steps = min(
            schedule.steps_per_epoch, schedule.total_steps - epoch * schedule.steps_per_epoch
        )
        steps -= skip
        if steps <= 0:  # Keras would take 0 steps per epoch for "until the data ends"
            break
        with warnings.catch_warnings():
            # Keras takes the end of a validation set of unknown length (a
            # distributed one) for training data running out; the training
            # data here repeats forever.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            fit = model.fit(
                train(epoch, skip),
                epochs=epoch + 1,
                initial_epoch=epoch,
                steps_per_epoch=steps,
                validation_data=validation(epoch) if validation else None,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # the data layer shuffles
            )
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        epoch, skip = epoch + 1, 0
    return history


def train(
    config: TrainConfig,
    resume: bool | None = None,
    callbacks: Sequence = (),
    verbose: str | int = "auto",
) -> TrainResult:
    """Runs (or resumes) a training run as `config` says; see the module docstring.

    Called inside a `tf.distribute.Strategy`'s scope, it trains with that
    strategy (and `config.strategy` is not used).

    Args:
        config: the settings; `config.data_dir` None trains the demo.
        resume: continue the run in `config.out_dir` (None: when it holds one).
        callbacks: further Keras callbacks.
        verbose: Keras' `fit` verbosity.

    Returns:
        A `TrainResult`.

    Raises:
        ConfigError, data.DatasetError, losses.VGGWeightsError, TrainError,
        lock.RunLockedError, checkpoints.CheckpointWriteError.
    """
    import tensorflow as tf

    from tf_deraindrop.training import distribute
    from tf_deraindrop.training.build import build_gan, restore
    from tf_deraindrop.training.finetune import InitialWeights
    from tf_deraindrop.training.inputs import TrainingInputs, ensure_demo_data
    from tf_deraindrop.training.lock import RunLock

    config, strategy, precision = _runtime(config.validated())
    out_dir = config.out_dir or DEFAULT_OUT_DIR
    demo = config.data_dir is None
    chief = distribute.is_chief()
    # Other workers write their (identical) checkpoints to a scratch folder.
    work_dir = out_dir if chief else os.path.join(out_dir, f".worker-{distribute.task()[1]}")
    lock = RunLock(out_dir) if chief else None
    if lock is not None:
        lock.acquire()
    try:
        init = InitialWeights(config)
        if resume is False or not has_checkpoint(work_dir):
            init.load()  # a bad --init-* file fails before any data is read
        data_dir = config.data_dir or ensure_demo_data(os.path.join(work_dir, "demo_data"), seed=0)
        inputs = TrainingInputs.prepare(config, data_dir, strategy)
        schedule = Schedule.of(
            config, inputs.n_train, config.batch_size * strategy.num_replicas_in_sync
        )
        with distribute.precision_policy(precision):
            # Only the networks are built in the strategy's scope: a callback
            # that makes variables there (the float32 copy exported on the
            # chief) would make the workers' collective broadcasts disagree.
            with strategy.scope():
                gan, perceptual_note = build_gan(config, demo)
                start = restore(gan, config, checkpoint_dir(work_dir), init, resume)
            manager = tf.train.CheckpointManager(
                gan.checkpoint(), checkpoint_dir(work_dir), max_to_keep=config.keep_checkpoints
            )
            facts = dict(precision=precision, perceptual_loss=perceptual_note)
            record = run_record(
                config,
                inputs,
                data_dir,
                schedule,
                gan,
                strategy,
                **facts,
                resumed_from_step=start,
                starting_weights=_lineage(config, start),
            )
            if chief:
                write_json_atomic(os.path.join(out_dir, "config.json"), record)
            _announce(out_dir, start, schedule, record)
            run = _RunCallbacks(out_dir, config, inputs, manager, record, chief, schedule)
            try:
                history = _fit_epochs(
                    gan, inputs, schedule, start, [*run.callbacks, *callbacks], run.watch, verbose
                )
                run.finish(gan)
            finally:
                run.close()
    finally:
        if lock is not None:
            lock.release()
        if not chief:
            shutil.rmtree(work_dir, ignore_errors=True)
    return run.result(gan, manager, start, perceptual_note, history)


def _runtime(config: TrainConfig):
    """The strategy, the precision and the seed: `(config with its seed, strategy, precision)`."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_deraindrop.training import distribute

    # The strategy first: multi-worker and logical devices need a fresh runtime;
    # called inside a strategy's scope, train with that strategy.
    strategy = (
        tf.distribute.get_strategy()
        if tf.distribute.has_strategy()
        else distribute.make_strategy(config.strategy)
    )
    precision = distribute.resolve_precision(config.precision)
    if config.seed is None:
        config = dataclasses.replace(config, seed=int(np.random.default_rng().integers(2**31 - 1)))
    keras.utils.set_random_seed(config.seed)
    return config, strategy, precision


class _RunCallbacks:
    """The callbacks of one run, and what happens when it ends."""

    def __init__(self, out_dir, config, inputs, manager, record, chief, schedule):
        from tf_deraindrop.training import callbacks as cb
        from tf_deraindrop.training.checkpoints import CheckpointSaver, LossWatch

        self.chief, self.out_dir = chief, out_dir
        self.watch = LossWatch()
        self.saver = CheckpointSaver(manager, config.checkpoint_every, self.watch)
        self.callbacks = [self.watch, self.saver]
        self.logger = self.best = None
        self.generator_path = os.path.join(out_dir, "generator.keras")
        if chief:
            self.logger = cb.TensorBoardLogger(
                os.path.join(out_dir, "logs"),
                sample=inputs.sample,
                samples_dir=os.path.join(out_dir, "samples"),
                config=record,
                log_every=config.log_every,
                image_every=config.image_every,
            )
            self.callbacks.append(self.logger)
            if inputs.val_pairs:
                self.best = cb.BestGeneratorSaver(self.generator_path)
                self.callbacks.append(self.best)
        self.callbacks.append(cb.RunProgress(schedule.total_epochs))

    def finish(self, gan) -> None:
        """Exports the final generator where no best-by-validation one was written."""
        from tf_deraindrop.training.callbacks import export_generator

        stopped = self.watch.stopped_at is not None
        if self.chief and not stopped and (self.best is None or not _existing(self.generator_path)):
            export_generator(gan.generator, self.generator_path)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()

    def result(self, gan, manager, start: int, perceptual_note: str, history) -> TrainResult:
        """The run's `TrainResult` (paths only on the chief, which writes them)."""
        chief = self.chief
        return TrainResult(
            out_dir=self.out_dir,
            start_step=start,
            step=int(gan.global_step.numpy()),
            stopped_on_nan=self.watch.stopped_at is not None,
            last_checkpoint=manager.latest_checkpoint if chief else None,
            resume_checkpoint=self.saver.resume_point() if chief else None,
            stopped_again_from=self.saver.stopped_again_from() if chief else None,
            generator_path=_existing(self.generator_path) if chief else None,
            sample_path=_existing(os.path.join(self.out_dir, "samples", "latest.png"))
            if chief
            else None,
            perceptual=not perceptual_note.startswith("off"),
            history=history,
        )


def _lineage(config: TrainConfig, start: int) -> str:
    """Where this run's weights came from, for config.json."""
    origin = ", ".join(
        f"{name} from {path}"
        for name, path in (
            ("generator", config.init_generator),
            ("discriminator", config.init_discriminator),
        )
        if path
    )
    origin = origin or "random"
    frozen = f"; {config.freeze} frozen" if config.freeze else ""
    if start:
        return f"checkpoint at step {start} (the run started from: {origin}){frozen}"
    return f"{origin}{frozen}"


def _existing(path: str) -> str | None:
    return path if os.path.isfile(path) else None
