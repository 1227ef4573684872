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
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from tf_deraindrop.training.config import ConfigError, TrainConfig, load_saved, load_toml
from tf_deraindrop.training.run import DEFAULT_EPOCHS, DEFAULT_OUT_DIR, has_checkpoint, train

#: The demo (no --data-dir): a small crop and a short run, a few minutes on two CPU
#: cores, AVX2-only ones included (there a step takes about 2 s, in float32).
#: Flags and --config override these too.
DEMO_DEFAULTS: dict[str, Any] = {
    "out_dir": os.path.join("runs", "demo"),
    "crop_size": 64,
    "steps": 160,
    "val_fraction": 0.15,
    "log_every": 5,
    "image_every": 40,
    "checkpoint_every": 40,
    "g_lr": 5e-4,
    "d_lr": 5e-4,
}

EXIT_OK, EXIT_NAN, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# Command line ------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _data_flags(add) -> None:
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


def _length_flags(add) -> None:
    add(
        "steps",
        f"total training steps (wins over --epochs; default: {DEFAULT_EPOCHS} epochs)",
        type=int,
    )
    add("epochs", "epochs (passes over the training pairs)", type=int)
    add("steps_per_epoch", "steps per epoch (default: training pairs / global batch)", type=int)


def _starting_weights_flags(add) -> None:
    add(
        "generator",
        "the paper's generator, or LiteGenerator, the real-time student (trained from scratch "
        "with the same GAN losses; see also python -m tf_deraindrop.distill)",
        choices=("full", "lite"),
    )
    add("lite_preset", "LiteGenerator size: nano, small, base or large", metavar="NAME")
    add(
        "init_generator",
        "start the generator from these weights: the authors' gen.pkl, a generator.keras "
        "or a .weights.h5 (a resumed run keeps its own weights and does not re-import)",
        metavar="FILE",
    )
    add(
        "init_discriminator",
        "start the discriminator from a .keras or .weights.h5 file (default: random)",
        metavar="FILE",
    )
    add(
        "freeze",
        "train only the other part of the generator",
        choices=("attention", "autoencoder"),
    )


def _optimisation_flags(add) -> None:
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


def _losses_flags(add) -> None:
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


def _hardware_flags(add) -> None:
    add(
        "precision",
        "auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AVX512_BF16 or AMX, "
        "float32 on other CPUs",
        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    )
    add(
        "strategy",
        "auto: multi_worker with a TF_CONFIG cluster, mirrored with several GPUs",
        choices=("auto", "default", "mirrored", "multi_worker"),
    )
    add("jit_compile", "compile the training step with XLA", action=argparse.BooleanOptionalAction)


def _output_flags(add) -> None:
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


_FLAG_GROUPS = (
    ("data", _data_flags),
    ("length", _length_flags),
    ("starting weights (fine-tuning)", _starting_weights_flags),
    ("optimisation (Adam)", _optimisation_flags),
    ("losses (paper values)", _losses_flags),
    ("hardware", _hardware_flags),
    ("output", _output_flags),
)


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

    for title, add_flags in _FLAG_GROUPS:
        add_flags(group(title))
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


def _report(result, elapsed: float) -> None:
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


def _nan_message(result, config) -> str:
    """What a NaN stop means and what to do: resume, or change the settings when it recurs."""
    stopped = f"a loss became NaN or infinite; training stopped at step {result.step}."
    rates = f"--g-lr {config.g_lr:g} --d-lr {config.d_lr:g}"
    lower = f"--g-lr {config.g_lr / 10:g} --d-lr {config.d_lr / 10:g}"
    if result.stopped_again_from is not None:
        origin = (
            f"checkpoint ckpt-{result.stopped_again_from}, which was confirmed sane and is kept"
            if result.stopped_again_from
            else "step 0"
        )
        return (
            f"{stopped} It blew up again after resuming from {origin}: the settings, not the "
            f"weights, are the cause. The learning rates in force are {rates} (kept in "
            f"{os.path.join(result.out_dir, 'config.json')} for this run); run the same command "
            f"with lower ones, such as {lower}, or with --precision float32."
        )
    if result.resume_checkpoint:
        resume = (
            f"resumes from {os.path.basename(result.resume_checkpoint)}, the newest checkpoint "
            "whose following steps stayed sane"
        )
    else:
        resume = "resumes from step 0: no checkpoint was confirmed sane"
    return (
        f"{stopped} Running the same command again {resume}. If it blows up again, lower the "
        f"learning rates ({rates} now) or use --precision float32."
    )


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
    from tf_deraindrop.losses import VGGWeightsError
    from tf_deraindrop.training.finetune import InitWeightsError
    from tf_deraindrop.training.lock import RunLockedError
    from tf_deraindrop.training.run import TrainError
    from tf_deraindrop.utils.images import ImageReadError

    # OSError covers write errors too (a full disk: checkpoints.CheckpointWriteError).
    expected = (
        ConfigError,
        DatasetError,
        ImageReadError,
        VGGWeightsError,
        TrainError,
        RunLockedError,
        InitWeightsError,
        OSError,
    )
    try:
        from tf_deraindrop.synthetic.synthesize import SynthesisError

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
        print(f"error: {_nan_message(result, config)}", file=sys.stderr)
        return EXIT_NAN
    _report(result, time.monotonic() - start)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
