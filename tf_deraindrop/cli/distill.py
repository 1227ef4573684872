"""Distill a generator into a real-time `LiteGenerator`: `python -m tf_deraindrop.distill`.

Usage:
    python -m tf_deraindrop.distill --teacher gen.pkl --data-dir my_footage/ --out-dir runs/lite
    python -m tf_deraindrop.distill --teacher generator.keras --data-dir Raindrop/train \\
        --cache-teacher --steps 20000 --preset base

`--data-dir` holds rainy images or videos with no clean partner (the teacher
labels them; videos give one frame every `--frame-every` seconds, extracted
once into OUT/frames), or pairs in the Raindrop layout (data/, gt/), whose
ground truth is used as well. The run writes `config.json`, `checkpoints/`
(run the same command again to resume, also after `kill -9`), `logs/`
(TensorBoard: losses, validation PSNR against the teacher, panels rainy |
teacher | student | attention), `samples/`, and `generator.keras`: the
student with the best validation PSNR against the teacher. Export it with
`deraindrop export --weights OUT/generator.keras --quantize int8 ...`.

Exit status: 0 done, 1 stopped on a non-finite loss, 2 bad input (teacher,
data folder, video, flag), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

EXIT_OK, EXIT_NAN, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Flags and their help; each is a field of `DistillConfig`.
_HELP = {
    "teacher": "the teacher: the authors' gen.pkl or a generator .keras (required)",
    "data_dir": "rainy images/videos, or Raindrop-layout pairs (required)",
    "val_dir": "validation frames (default: --val-fraction of --data-dir)",
    "out_dir": "run folder",
    "preset": "student size (nano, small, base, large)",
    "val_fraction": "share of the frames held out for validation",
    "frame_every": "seconds between the frames taken from a video",
    "crop_size": "training crop (multiple of 4)",
    "batch_size": "crops per step",
    "steps": "training steps in all",
    "steps_per_epoch": "steps between validations",
    "lr": "student learning rate (Adam)",
    "lr_decay_steps": "steps between learning-rate halvings (0: none)",
    "lr_decay_rate": "learning-rate factor at each decay",
    "theta": "attention loss decay per step",
    "attention_weight": "weight of the attention-map term",
    "gt_weight": "weight of the ground-truth multi-scale term (pairs only)",
    "perceptual_weight": "weight of the VGG16 perceptual term against the teacher (0: off)",
    "vgg_weights": "VGG16 weights for the perceptual term",
    "gan_weight": "weight of the adversarial term (0: no discriminator)",
    "d_lr": "discriminator learning rate",
    "feature_weight": "weight of the feature term: the student's maps at 1/4 and 1/2 size, through "
    "learned 1x1 adapters, against the teacher's (0: off; not with --cache-teacher)",
    "cache_teacher": "compute the teacher on whole frames once and cache it (else per crop)",
    "teacher_precision": "teacher on the fly: auto (bfloat16 where the CPU has it), float32, ...",
    "log_every": "steps between TensorBoard scalars",
    "image_every": "steps between panels",
    "checkpoint_every": "steps between checkpoints",
    "keep_checkpoints": "checkpoints kept",
    "seed": "seed of the weights, data order and crops (default: drawn, then saved)",
}


def build_parser() -> argparse.ArgumentParser:
    from tf_deraindrop.training.distill import DistillConfig

    defaults = DistillConfig()
    parser = argparse.ArgumentParser(
        prog="python -m tf_deraindrop.distill",
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 done, 1 non-finite loss, 2 bad input, 130 interrupted.",
        argument_default=argparse.SUPPRESS,
    )
    for name, text in _HELP.items():
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=text)
            continue
        kind = type(default) if default is not None else (int if name == "seed" else str)
        if default is not None:
            text += f" (default: {default})"
        parser.add_argument(flag, dest=name, type=kind, help=text)
    parser.add_argument(
        "--lambdas", type=float, nargs=3, metavar="W", help="multi-scale weights (0.6 0.8 1.0)"
    )
    return parser


def resolve_config(args: argparse.Namespace):
    """Defaults < the out-dir's saved `config.json` (when resuming) < flags."""
    from tf_deraindrop.training.distill import DistillConfig, DistillError

    flags = vars(args)
    config = DistillConfig()
    out_dir = flags.get("out_dir", config.out_dir)
    saved = os.path.join(out_dir, "config.json")
    if os.path.isfile(saved) and os.path.isdir(os.path.join(out_dir, "checkpoints")):
        try:
            with open(saved, encoding="utf-8") as f:
                config = config.update(json.load(f).get("config", {}))
        except (OSError, ValueError) as err:
            raise DistillError(f"cannot read the saved configuration {saved}: {err}") from err
    return config.update(flags).validated()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tf_deraindrop.training.distill import DistillError

    try:
        config = resolve_config(args)
    except DistillError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    # Checked before TensorFlow loads: a wrong path fails at once.
    if not os.path.isfile(config.teacher):
        print(f"error: --teacher {config.teacher}: no such file", file=sys.stderr)
        return EXIT_USAGE
    if not os.path.isdir(config.data_dir):
        print(f"error: --data-dir {config.data_dir}: no such folder", file=sys.stderr)
        return EXIT_USAGE

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_deraindrop.training.distill import distill, main_errors

    start = time.monotonic()
    try:
        result = distill(config)
    except main_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nInterrupted. Run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.stopped_on_nan:
        print(
            f"error: a loss became NaN or infinite at step {result.step}; run the same command "
            "again to resume from the last sane checkpoint, or lower --lr.",
            file=sys.stderr,
        )
        return EXIT_NAN
    per_step = f", {result.seconds_per_step:.2f} s/step" if result.seconds_per_step else ""
    print(
        f"Distilled steps {result.start_step} to {result.step} in "
        f"{(time.monotonic() - start) / 60:.1f} min{per_step}.\n"
        f"  student:     {result.generator_path}\n"
        f"  TensorBoard: tensorboard --logdir {os.path.join(result.out_dir, 'logs')}\n"
        f"  export:      deraindrop export --weights {result.generator_path} "
        "--height 480 --width 720 --quantize int8 --calibration-dir RAINY_PHOTOS -o lite.tflite",
        flush=True,
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
