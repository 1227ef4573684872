"""The settings of a distillation run (no TensorFlow here: the CLI's `--help` stays fast)."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from tf_deraindrop.training.config import MAX_SEED


class DistillError(ValueError):
    """Bad input for a distillation run (teacher, data, flags); the message names it."""


@dataclasses.dataclass
class DistillConfig:
    """Everything a distillation run needs; field names double as flag names.

    Example:
        >>> config = DistillConfig(teacher="gen.pkl", data_dir="footage", steps=2000)
    """

    teacher: str | None = None
    data_dir: str | None = None
    val_dir: str | None = None
    out_dir: str = os.path.join("runs", "lite")
    preset: str = "base"
    # Data.
    val_fraction: float = 0.1
    frame_every: float = 1.0
    crop_size: int = 128
    batch_size: int = 4
    # Length.
    steps: int = 2000
    steps_per_epoch: int = 200
    # Optimisation.
    lr: float = 1e-3
    lr_decay_steps: int = 0
    lr_decay_rate: float = 0.5
    # Losses.
    theta: float = 0.8
    lambdas: tuple[float, float, float] = (0.6, 0.8, 1.0)
    attention_weight: float = 1.0
    gt_weight: float = 1.0
    perceptual_weight: float = 0.0
    vgg_weights: str = "imagenet"
    gan_weight: float = 0.0
    d_lr: float = 2e-4
    feature_weight: float = 0.0
    # Teacher.
    cache_teacher: bool = False
    teacher_precision: str = "auto"
    # Output.
    log_every: int = 10
    image_every: int = 200
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    seed: int | None = None

    def validated(self) -> DistillConfig:
        """Checks the values; raises DistillError naming the flag."""
        from tf_deraindrop.models.lite_generator import PRESETS

        def need(ok: bool, name: str, message: str):
            if not ok:
                raise DistillError(f"--{name.replace('_', '-')}: {message}")

        need(bool(self.teacher), "teacher", "is required (gen.pkl or generator.keras).")
        need(bool(self.data_dir), "data_dir", "is required (rainy images, videos or pairs).")
        need(self.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}.")
        need(
            self.crop_size >= 16 and self.crop_size % 4 == 0, "crop_size", "a multiple of 4, >= 16."
        )
        for name in ("batch_size", "steps", "steps_per_epoch", "log_every", "image_every"):
            need(getattr(self, name) >= 1, name, "must be at least 1.")
        for name in ("checkpoint_every", "keep_checkpoints"):
            need(getattr(self, name) >= 1, name, "must be at least 1.")
        need(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1).")
        need(self.frame_every > 0, "frame_every", "must be a positive number of seconds.")
        need(self.lr > 0 and self.d_lr > 0, "lr", "learning rates must be positive.")
        need(math.isfinite(self.lr) and math.isfinite(self.d_lr), "lr", "must be finite numbers.")
        need(
            self.seed is None or 0 <= self.seed <= MAX_SEED,
            "seed",
            f"must be a whole number from 0 to {MAX_SEED}.",
        )
        need(len(self.lambdas) == 3, "lambdas", "needs three weights (1/4, 1/2, full size).")
        for name in ("attention_weight", "gt_weight", "perceptual_weight", "gan_weight"):
            need(getattr(self, name) >= 0, name, "must be zero or more.")
        need(self.feature_weight >= 0, "feature_weight", "must be zero or more.")
        need(
            not (self.feature_weight and self.cache_teacher),
            "feature_weight",
            "cannot be combined with --cache-teacher: the cache would have to hold the "
            "teacher's feature maps (the full generator's: 256 channels at 1/4 size, 128 at 1/2; "
            "33 MB per 480 x 720 frame in float16, about 10x its cached outputs). Leave out "
            "--cache-teacher (the teacher then runs on the fly) or set --feature-weight 0.",
        )
        choices = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
        need(
            self.teacher_precision in choices, "teacher_precision", f"one of {', '.join(choices)}."
        )
        return self

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["lambdas"] = list(self.lambdas)
        return values

    def update(self, values: dict[str, Any]) -> DistillConfig:
        """A copy with `values` (flag or JSON names) applied; DistillError on an unknown key."""
        names = {f.name for f in dataclasses.fields(self)}
        changes = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in names:
                raise DistillError(f"unknown setting '{key}'")
            changes[name] = tuple(value) if name == "lambdas" else value
        return dataclasses.replace(self, **changes)

    def loss_weights(self) -> dict[str, Any]:
        """The loss weights, as `Distiller.compile` takes them."""
        names = ("theta", "lambdas", "attention_weight", "gt_weight", "perceptual_weight")
        return {name: getattr(self, name) for name in (*names, "gan_weight", "feature_weight")}
