"""Train the Attentive GAN: `python -m tf_deraindrop.train`.

Usage:
    python -m tf_deraindrop.train                       # a short demo on synthetic raindrops
    python -m tf_deraindrop.train --data-dir Raindrop/train --val-dir Raindrop/test_a \\
        --out-dir runs/raindrop --epochs 100
    python -m tf_deraindrop.train --config run.toml --batch-size 4   # flags override the file

A run writes into its out-dir: `config.json` (the resolved configuration),
`checkpoints/` (resumable state), `logs/` (TensorBoard), `samples/` (PNG
panels: rainy | attention A1..A4 | output | clean) and `generator.keras`
(the generator with the best validation PSNR). Run the same command again
to resume a run that was stopped or killed.

Each epoch is one `fit` call whose data stream is seeded by the run's seed and
the epoch number; a resumed run rebuilds that stream and skips the steps the
epoch had done, so it sees the same batches as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

from tf_deraindrop.training.config import (
    ConfigError,
    TrainConfig,
    load_saved,
    load_toml,
    write_json_atomic,
)

#: Epochs of a real run when neither --steps nor --epochs is given (our choice).
DEFAULT_EPOCHS = 100
DEFAULT_OUT_DIR = os.path.join("runs", "attentive_gan")
#: The demo (no --data-dir): a small crop and a short run, about 4 to 5 minutes
#: on two idle CPU cores. Flags and --config override these too.
DEMO_DEFAULTS: dict[str, Any] = {
    "out_dir": os.path.join("runs", "demo"),
    "crop_size": 64,
    "steps": 480,
    "val_fraction": 0.15,
    "log_every": 5,
    "image_every": 60,
    "checkpoint_every": 60,
    "g_lr": 5e-4,
    "d_lr": 5e-4,
}
#: Synthetic demo set: every scikit-image photo, resized to this (H, W), this many times.
DEMO_IMAGE_SIZE = (96, 128)
DEMO_PAIRS_PER_IMAGE = 8

EXIT_OK, EXIT_NAN, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class TrainError(RuntimeError):
    """A run that cannot go on (bad resume, data that cannot be read); a clear message."""


@dataclasses.dataclass
class TrainResult:
    """What a run did and where it put things."""

    out_dir: str
    start_step: int
    step: int
    stopped_on_nan: bool
    last_checkpoint: str | None
    generator_path: str | None
    sample_path: str | None
    perceptual: bool
    history: dict[str, list[float]]


# Command line ------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m tf_deraindrop.train",
        description="Train the Attentive GAN (Qian et al., CVPR 2018) for raindrop removal. "
        "Without --data-dir, trains a short demo on raindrops synthesized over "
        "scikit-image photos.",
        epilog="Settings resolve as: defaults < the out-dir's saved config (when resuming) "
        "< --config FILE.toml < flags. Monitor with: tensorboard --logdir OUT/logs",
        argument_default=argparse.SUPPRESS,
    )

    def group(title: str):
        grp = parser.add_argument_group(title)

        def add(name, help_text, **kwargs):
            default = getattr(d, name)
            if isinstance(default, float):
                help_text += f" (default: {default:g})"
            elif default is not None and not isinstance(default, bool):
                help_text += f" (default: {default})"
            grp.add_argument(_flag(name), dest=name, help=help_text, **kwargs)

        return add

    add = group("data")
    add(
        "data_dir",
        "training pairs: a Raindrop-layout folder (data/<k>_rain.png, gt/<k>_clean.png) "
        "or a folder of TFRecord shards; omit it for the demo",
        metavar="DIR",
    )
    add(
        "val_dir",
        "validation pairs (default: hold out --val-fraction of --data-dir)",
        metavar="DIR",
    )
    add(
        "val_fraction",
        "share of --data-dir held out for validation when there is no --val-dir",
        type=float,
    )
    add(
        "mask_threshold",
        "raindrop mask threshold: max over channels of |rainy - clean|",
        type=float,
    )
    add(
        "skip_bad",
        "skip unreadable or unmatched pairs with a warning instead of stopping",
        action=argparse.BooleanOptionalAction,
    )
    add(
        "crop_size",
        "square training crop; the discriminator is built for it (paper: 224)",
        type=int,
    )
    add("batch_size", "examples per replica per step", type=int)

    add = group("length")
    add(
        "steps",
        f"total training steps (wins over --epochs; default: {DEFAULT_EPOCHS} epochs)",
        type=int,
    )
    add("epochs", "epochs (passes over the training pairs)", type=int)
    add("steps_per_epoch", "steps per epoch (default: training pairs / global batch)", type=int)

    add = group("optimisation (Adam)")
    add("g_lr", "generator learning rate", type=float)
    add("d_lr", "discriminator learning rate", type=float)
    add("beta_1", "Adam beta_1", type=float)
    add("beta_2", "Adam beta_2", type=float)
    add(
        "lr_decay_steps",
        "multiply both learning rates by --lr-decay-rate every this many steps (0: constant)",
        type=int,
    )
    add("lr_decay_rate", "learning-rate decay factor", type=float)

    add = group("losses (paper values)")
    add("theta", "attention loss decay theta", type=float)
    add(
        "lambdas",
        "multi-scale loss weights at 1/4, 1/2, full size",
        type=float,
        nargs=3,
        metavar=("L1", "L2", "L3"),
    )
    add("gan_weight", "weight of the generator's GAN term", type=float)
    add("gamma", "weight of the discriminator's map loss", type=float)
    add("perceptual_weight", "weight of the VGG16 perceptual loss", type=float)
    add(
        "saturating_gan",
        "use the paper's log(1 - D(O)) generator loss instead of -log D(O)",
        action=argparse.BooleanOptionalAction,
    )
    add(
        "vgg_weights",
        "VGG16 weights of the perceptual loss: imagenet, a local .h5 file, or none",
        metavar="imagenet|PATH|none",
    )

    add = group("hardware")
    add(
        "precision",
        "auto: mixed_float16 on a GPU, float32 on the CPU",
        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    )
    add(
        "strategy",
        "auto: multi_worker with a TF_CONFIG cluster, mirrored with several GPUs",
        choices=("auto", "default", "mirrored", "multi_worker"),
    )
    add("jit_compile", "compile the training step with XLA", action=argparse.BooleanOptionalAction)

    add = group("output")
    add(
        "out_dir",
        f"run folder (default: {DEFAULT_OUT_DIR}, or {DEMO_DEFAULTS['out_dir']} for the demo)",
        metavar="DIR",
    )
    add("log_every", "steps between TensorBoard scalars", type=int)
    add("image_every", "steps between TensorBoard image panels", type=int)
    add("checkpoint_every", "steps between checkpoints", type=int)
    add("keep_checkpoints", "checkpoints kept", type=int)
    add("val_every", "epochs between validations", type=int)
    add("seed", "seed of the weights, data order and crops (default: drawn, then saved)", type=int)
    parser.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE.toml",
        help="TOML file of settings (keys as the flags, e.g. crop_size = 224)",
    )
    parser.add_argument(
        "--resume",
        dest="resume",
        action=argparse.BooleanOptionalAction,
        help="resume the run in --out-dir (default: yes when it holds one)",
    )
    return parser


def checkpoint_dir(out_dir: str) -> str:
    return os.path.join(out_dir, "checkpoints")


def has_checkpoint(out_dir: str) -> bool:
    import tensorflow as tf

    return tf.train.latest_checkpoint(checkpoint_dir(out_dir)) is not None


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """Layers defaults, the demo's defaults, the saved run, the TOML file and the flags.

    Returns:
        `(config, resume)`.
    """
    flags = {k: v for k, v in vars(args).items() if k not in ("config_file", "resume")}
    toml_values = load_toml(args.config_file) if getattr(args, "config_file", None) else {}
    toml_values = {k.replace("-", "_"): v for k, v in toml_values.items()}
    TrainConfig().update(toml_values, source=f"--config {getattr(args, 'config_file', '')}")

    def pick(name, default=None):
        return flags.get(name, toml_values.get(name, default))

    demo = pick("data_dir") is None
    out_dir = pick("out_dir") or (DEMO_DEFAULTS["out_dir"] if demo else DEFAULT_OUT_DIR)
    resume = getattr(args, "resume", None)
    found = has_checkpoint(out_dir)
    if resume is False and found:
        raise ConfigError(
            f"--no-resume: {out_dir} already holds a run. Choose another --out-dir, "
            "delete that one, or leave out --no-resume to continue it."
        )
    if resume and not found:
        print(f"Nothing to resume in {out_dir}; starting a new run.", file=sys.stderr)
    resume = found if resume is None else bool(resume and found)

    config = TrainConfig()
    if demo:
        config = config.update(DEMO_DEFAULTS, source="demo defaults")
    saved_path = os.path.join(out_dir, "config.json")
    if resume and os.path.isfile(saved_path):
        config = config.update(load_saved(saved_path), source=saved_path)
    config = config.update(toml_values, source=f"--config {getattr(args, 'config_file', '')}")
    config = config.update(flags, source="command line")
    return dataclasses.replace(config, out_dir=out_dir), resume


# Training ----------------------------------------------------------------------


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch: new shuffles and crops every epoch, reproducible on resume."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**31 - 1)


def ensure_demo_data(path: str, seed: int) -> str:
    """Synthesizes the demo's raindrop pairs into `path` once (atomically, by renaming)."""
    done = os.path.join(path, ".complete")
    if os.path.isfile(done):
        return path
    from data_tools.synthesize import synthesize_dataset

    partial = path + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    print(f"Synthesizing the demo's raindrop pairs into {path} ...", flush=True)
    count = synthesize_dataset(
        partial,
        pairs_per_image=DEMO_PAIRS_PER_IMAGE,
        seed=seed,
        size=DEMO_IMAGE_SIZE,
        progress=sys.stderr.isatty(),
    )
    with open(os.path.join(partial, ".complete"), "w", encoding="utf-8") as f:
        f.write(f"{count} pairs\n")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)
    return path


def count_records(directory: str) -> int:
    """Number of examples in a folder of TFRecord shards (reads, does not decode)."""
    import tensorflow as tf

    from tf_deraindrop.data import records

    files = records.find_tfrecords(directory)
    return int(tf.data.TFRecordDataset(files).reduce(0, lambda n, _: n + 1).numpy())


def _make_perceptual(config: TrainConfig, demo: bool):
    """The perceptual loss, or None (demo without weights, or --vgg-weights none)."""
    from tf_deraindrop.losses import PerceptualLoss, VGGWeightsError

    weights = config.vgg_weights
    if weights.lower() == "none":
        return None, "off (--vgg-weights none)"
    try:
        return PerceptualLoss(weights=None if weights is None else weights), f"on (VGG16 {weights})"
    except VGGWeightsError as err:
        if not demo:
            raise
        print(
            "NOTE: the VGG16 ImageNet weights cannot be had here, so this demo trains "
            "WITHOUT the perceptual loss L_P. (" + str(err).split(". Without")[0] + ")",
            flush=True,
        )
        return None, "off (demo: VGG16 ImageNet weights unavailable)"


def _optimizer(lr: float, config: TrainConfig, name: str):
    import keras

    if config.lr_decay_steps:
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr, config.lr_decay_steps, config.lr_decay_rate, staircase=True
        )
    return keras.optimizers.Adam(lr, beta_1=config.beta_1, beta_2=config.beta_2, name=name)


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
        ConfigError, data.DatasetError, losses.VGGWeightsError, TrainError.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_deraindrop import data
    from tf_deraindrop.models import Discriminator, Generator
    from tf_deraindrop.training import callbacks as cb
    from tf_deraindrop.training import distribute
    from tf_deraindrop.training.gan import AttentiveGAN

    config = config.validated()
    out_dir = config.out_dir or DEFAULT_OUT_DIR
    demo = config.data_dir is None
    # The strategy first: multi-worker and logical devices need a fresh runtime.
    # Called inside a strategy's scope, train with that strategy.
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    else:
        strategy = distribute.make_strategy(config.strategy)
    precision = distribute.resolve_precision(config.precision)
    chief = distribute.is_chief()
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    if resume is None:
        resume = has_checkpoint(out_dir)
    if config.seed is None:
        config = dataclasses.replace(config, seed=int(np.random.default_rng().integers(2**31 - 1)))
    keras.utils.set_random_seed(config.seed)
    os.makedirs(out_dir, exist_ok=True)
    # Other workers write their (identical) checkpoints to a scratch folder.
    work_dir = out_dir if chief else os.path.join(out_dir, f".worker-{distribute.task()[1]}")

    # Data.
    data_dir = config.data_dir
    if demo:
        data_dir = ensure_demo_data(os.path.join(work_dir, "demo_data"), seed=0)
    if data.is_tfrecord_dir(data_dir):
        train_source = data_dir
        val_pairs = data.find_pairs(config.val_dir, config.skip_bad) if config.val_dir else []
        if not config.val_dir and config.val_fraction:
            print(
                f"NOTE: {data_dir} holds TFRecords; --val-fraction does not apply to them. "
                "Give --val-dir for validation.",
                flush=True,
            )
        n_train = None if config.steps_per_epoch else count_records(data_dir)
    else:
        pairs = data.find_pairs(data_dir, config.skip_bad)
        if config.val_dir:
            train_pairs, val_pairs = pairs, data.find_pairs(config.val_dir, config.skip_bad)
        else:
            try:
                train_pairs, val_pairs = data.split_validation(
                    pairs, config.val_fraction, config.seed
                )
            except ValueError as err:
                raise ConfigError(f"--val-fraction: {err}") from err
        train_source, _ = data.check_pairs(train_pairs, config.crop_size, config.skip_bad)
        n_train = len(train_source)
    if val_pairs:
        val_pairs, _ = data.check_pairs(val_pairs, config.crop_size, config.skip_bad)
    steps_per_epoch = config.steps_per_epoch or max(1, n_train // global_batch)
    total_steps = config.steps or (config.epochs or DEFAULT_EPOCHS) * steps_per_epoch
    total_epochs = math.ceil(total_steps / steps_per_epoch)

    def train_data(epoch: int, skip: int):
        seed = epoch_seed(config.seed, epoch)

        def dataset_fn(context: tf.distribute.InputContext):
            ds = data.make_dataset(
                train_source,
                crop_size=config.crop_size,
                batch_size=config.batch_size,
                training=True,
                mask_threshold=config.mask_threshold,
                seed=seed,
                skip_bad=config.skip_bad,
                num_shards=context.num_input_pipelines,
                shard_index=context.input_pipeline_id,
            )
            return ds.skip(skip) if skip else ds

        return strategy.distribute_datasets_from_function(dataset_fn)

    def val_data():
        def dataset_fn(context: tf.distribute.InputContext):
            # Too few pairs to share out: every worker validates them all,
            # which leaves the mean the same.
            shard = len(val_pairs) >= context.num_input_pipelines
            return data.make_dataset(
                val_pairs,
                crop_size=config.crop_size,
                batch_size=config.batch_size,
                training=False,
                mask_threshold=config.mask_threshold,
                num_shards=context.num_input_pipelines if shard else 1,
                shard_index=context.input_pipeline_id if shard else 0,
            )

        return strategy.distribute_datasets_from_function(dataset_fn)

    # The image panels show the same few centre crops all run long: validation
    # pairs where there are some, else training pairs (or records).
    sample_source = val_pairs[:3] or (
        train_source if isinstance(train_source, str) else train_source[:3]
    )
    batch = next(
        iter(
            data.make_dataset(
                sample_source,
                crop_size=config.crop_size,
                batch_size=3,
                training=False,
                mask_threshold=config.mask_threshold,
            )
        )
    )
    sample = (batch[0].numpy(), batch[1].numpy())

    # Model.
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        with strategy.scope():
            perceptual, perceptual_note = _make_perceptual(config, demo)
            gan = AttentiveGAN(Generator(), Discriminator(crop_size=config.crop_size), perceptual)
            gan.compile(
                _optimizer(config.g_lr, config, "g_adam"),
                _optimizer(config.d_lr, config, "d_adam"),
                theta=config.theta,
                lambdas=config.lambdas,
                gan_weight=config.gan_weight,
                gamma=config.gamma,
                perceptual_weight=config.perceptual_weight,
                saturating_gan=config.saturating_gan,
                jit_compile=config.jit_compile,
            )
            checkpoint = gan.checkpoint()
            manager = tf.train.CheckpointManager(
                checkpoint, checkpoint_dir(work_dir), max_to_keep=config.keep_checkpoints
            )
            start_step = 0
            if resume and manager.latest_checkpoint:
                try:
                    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
                except (AssertionError, ValueError, tf.errors.OpError) as err:
                    raise TrainError(
                        f"cannot resume from {manager.latest_checkpoint}: "
                        f"{str(err).splitlines()[0]} "
                        "(was --crop-size, --precision or the model changed? Use another --out-dir "
                        "for a new run.)"
                    ) from err
                start_step = int(gan.global_step.numpy())
                if not config.lr_decay_steps:
                    # A changed learning rate wins over the saved one.
                    gan.g_optimizer.learning_rate = config.g_lr
                    gan.d_optimizer.learning_rate = config.d_lr
    except BaseException:
        keras.mixed_precision.set_global_policy(previous_policy)
        raise

    resolved = {
        "config": config.to_dict(),
        "resolved": {
            "demo": demo,
            "data_dir": data_dir,
            "training_pairs": n_train,
            "validation_pairs": len(val_pairs),
            "precision": precision,
            "strategy": distribute.strategy_name(strategy),
            "replicas": replicas,
            "global_batch_size": global_batch,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "total_epochs": total_epochs,
            "perceptual_loss": perceptual_note,
            "g_optimizer": type(gan.g_optimizer).__name__,
            "d_optimizer": type(gan.d_optimizer).__name__,
            "resumed_from_step": start_step,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }
    if chief:
        write_json_atomic(os.path.join(out_dir, "config.json"), resolved)

    if start_step >= total_steps:
        print(
            f"The run in {out_dir} is at step {start_step} of {total_steps}: nothing to train. "
            "Raise --steps or --epochs to train longer.",
            flush=True,
        )
    else:
        print(
            f"{'Resuming' if start_step else 'Starting'} training at step {start_step} "
            f"of {total_steps} ({total_epochs} epoch(s) of {steps_per_epoch} steps, global "
            f"batch {global_batch}, crop {config.crop_size}, {precision}, "
            f"{distribute.strategy_name(strategy)} with {replicas} replica(s)); "
            f"perceptual loss {perceptual_note}.",
            flush=True,
        )

    nan_guard = cb.NaNGuard()
    saver = cb.CheckpointSaver(manager, config.checkpoint_every, nan_guard)
    run_callbacks = [nan_guard, saver]
    logger = None
    best = None
    generator_path = os.path.join(out_dir, "generator.keras")
    if chief:
        logger = cb.TensorBoardLogger(
            os.path.join(out_dir, "logs"),
            sample=sample,
            samples_dir=os.path.join(out_dir, "samples"),
            config=resolved,
            log_every=config.log_every,
            image_every=config.image_every,
        )
        run_callbacks.append(logger)
        if val_pairs:
            best = cb.BestGeneratorSaver(generator_path)
            run_callbacks.append(best)
    run_callbacks += [cb.RunProgress(total_epochs), *callbacks]

    history: dict[str, list[float]] = {}
    epoch, skip = divmod(start_step, steps_per_epoch)
    try:
        while epoch < total_epochs and nan_guard.stopped_at is None:
            steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch) - skip
            if steps <= 0:  # Keras would take 0 steps per epoch for "until the data ends"
                break
            validate = bool(val_pairs) and (
                (epoch + 1) % config.val_every == 0 or epoch + 1 == total_epochs
            )
            with warnings.catch_warnings():
                # Keras takes the end of a validation set of unknown length (a
                # distributed one) for training data running out; the training
                # data here repeats forever.
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                fit = gan.fit(
                    train_data(epoch, skip),
                    epochs=epoch + 1,
                    initial_epoch=epoch,
                    steps_per_epoch=steps,
                    validation_data=val_data() if validate else None,
                    callbacks=run_callbacks,
                    verbose=verbose,
                    shuffle=False,  # the data layer shuffles
                )
            for key, values in fit.history.items():
                history.setdefault(key, []).extend(float(v) for v in values)
            epoch, skip = epoch + 1, 0
        if (
            chief
            and nan_guard.stopped_at is None
            and (best is None or not os.path.isfile(generator_path))
        ):
            cb.export_generator(gan.generator, generator_path)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if logger is not None:
            logger.close()
        if not chief:
            shutil.rmtree(work_dir, ignore_errors=True)

    return TrainResult(
        out_dir=out_dir,
        start_step=start_step,
        step=int(gan.global_step.numpy()),
        stopped_on_nan=nan_guard.stopped_at is not None,
        last_checkpoint=manager.latest_checkpoint if chief else None,
        generator_path=_existing(generator_path) if chief else None,
        sample_path=_existing(os.path.join(out_dir, "samples", "latest.png")) if chief else None,
        perceptual=perceptual is not None,
        history=history,
    )


def _existing(path: str) -> str | None:
    return path if os.path.isfile(path) else None


def _report(result: TrainResult, elapsed: float) -> None:
    out = result.out_dir
    lines = [
        f"Trained steps {result.start_step} to {result.step} in {elapsed / 60:.1f} min.",
        f"  checkpoint:  {result.last_checkpoint or '(none)'}"
        "  (run the same command again to resume)",
        f"  TensorBoard: tensorboard --logdir {os.path.join(out, 'logs')}",
        f"  samples:     {result.sample_path or '(none)'}",
        f"  model:       {result.generator_path or '(none)'}",
        f"  config:      {os.path.join(out, 'config.json')}",
    ]
    if not result.perceptual:
        lines.append("  (trained without the perceptual loss L_P)")
    print("\n".join(lines), flush=True)


def _op_error_summary(err) -> str:
    """The informative lines of a TensorFlow runtime error, without its node trace."""
    noise = ("Graph execution error", "Detected at node", "File ", "[[", "The error could be")
    lines = [line.strip() for line in (err.message or str(err)).splitlines()]
    useful = [line for line in lines if line and not line.startswith(noise)]
    return " ".join(useful) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, resume = resolve_config(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE

    import tensorflow as tf

    from tf_deraindrop.data import DatasetError
    from tf_deraindrop.images import ImageReadError
    from tf_deraindrop.losses import VGGWeightsError

    expected = (ConfigError, DatasetError, ImageReadError, VGGWeightsError, TrainError, OSError)
    try:
        from data_tools.synthesize import SynthesisError

        expected += (SynthesisError,)
    except ImportError:
        pass

    start = time.monotonic()
    try:
        result = train(config, resume=resume)
    except expected as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except tf.errors.OpError as err:
        # Data that only shows its fault once read (a TFRecord of the wrong size).
        print(f"error: {_op_error_summary(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Run the same command again to resume from the last checkpoint.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if result.stopped_on_nan:
        print(
            f"error: a loss became NaN or infinite; training stopped at step {result.step}. "
            f"The last good checkpoint is {result.last_checkpoint or '(none)'}; try a lower "
            "learning rate (--g-lr/--d-lr) or --precision float32.",
            file=sys.stderr,
        )
        return EXIT_NAN
    _report(result, time.monotonic() - start)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
