"""Training configuration: the paper's defaults, TOML files, and command-line overrides.

A run's configuration is resolved in layers, each overriding the one before:
the defaults below, the configuration saved in the out-dir by an earlier run
(when resuming), a `--config FILE.toml`, and flags given on the command line.
The resolved configuration is written to `OUT/config.json` by every run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from tf_deraindrop.data.masks import DEFAULT_THRESHOLD
from tf_deraindrop.utils.files import atomic_path

#: The default mask recipe (docs/architecture.md, section 6): max over channels of
#: |I - B| >= 30/255.
DEFAULT_MASK_THRESHOLD = DEFAULT_THRESHOLD
#: The largest seed NumPy and Keras take (2**32 - 1).
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A bad configuration value or file; the message names the key or file."""


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs. Field names double as flag and TOML key names.

    Values the paper fixes: crop 224, Adam, theta 0.8, lambdas (0.6, 0.8, 1.0),
    GAN weight 0.01, gamma 0.05, VGG16 perceptual loss. Values it does not fix
    and we chose: learning rates 2e-4, Adam betas (0.5, 0.999) (the usual
    image-to-image GAN setting), batch size 1 per replica, the non-saturating
    generator GAN loss, 100 epochs, no learning-rate decay.

    Example:
        >>> config = TrainConfig(steps=100, crop_size=64)
        >>> config.update({"g_lr": 1e-4}).g_lr
        0.0001
    """

    # Data.
    data_dir: str | None = None
    val_dir: str | None = None
    val_fraction: float = 0.05
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    skip_bad: bool = False
    crop_size: int = 224
    batch_size: int = 1
    # Length of the run: `steps` wins over `epochs` when both are set.
    steps: int | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    # The generator: the paper's ("full") or the real-time student ("lite").
    generator: str = "full"
    lite_preset: str = "base"
    # Starting weights (fine-tuning) instead of random ones.
    init_generator: str | None = None
    init_discriminator: str | None = None
    freeze: str | None = None
    # Optimisation.
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    lr_decay_steps: int = 0
    lr_decay_rate: float = 0.5
    # Loss weights (paper values).
    theta: float = 0.8
    lambdas: tuple[float, float, float] = (0.6, 0.8, 1.0)
    gan_weight: float = 0.01
    gamma: float = 0.05
    perceptual_weight: float = 1.0
    saturating_gan: bool = False
    vgg_weights: str = "imagenet"
    # Hardware.
    precision: str = "auto"
    strategy: str = "auto"
    jit_compile: bool = False
    # Output and logging.
    out_dir: str | None = None
    log_every: int = 10
    image_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    val_every: int = 1
    seed: int | None = None

    def update(self, values: Mapping[str, Any], source: str = "settings") -> TrainConfig:
        """Returns a copy with `values` applied; raises ConfigError naming an unknown key."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ConfigError(f"{source}: unknown setting '{key}'.")
            changes[name] = _coerce(name, value, fields[name].default, source)
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> TrainConfig:
        """Checks the values; raises ConfigError naming the bad one."""

        def need(ok: bool, name: str, message: str):
            if not ok:
                raise ConfigError(f"--{name.replace('_', '-')}: {message}")

        need(
            self.crop_size >= 16 and self.crop_size % 4 == 0,
            "crop_size",
            "must be a multiple of 4, at least 16.",
        )
        need(self.batch_size >= 1, "batch_size", "must be at least 1.")
        need(self.steps is None or self.steps >= 1, "steps", "must be at least 1.")
        need(self.epochs is None or self.epochs >= 1, "epochs", "must be at least 1.")
        need(
            self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            "steps_per_epoch",
            "must be at least 1.",
        )
        need(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1).")
        need(0.0 <= self.mask_threshold <= 1.0, "mask_threshold", "must be in [0, 1].")
        need(len(self.lambdas) == 3, "lambdas", "needs three weights (1/4, 1/2, full size).")
        for name in ("g_lr", "d_lr"):
            value = getattr(self, name)
            need(math.isfinite(value), name, f"must be a finite number, not {value}.")
            need(value >= 0, name, "must not be negative.")
        need(
            self.seed is None or 0 <= self.seed <= MAX_SEED,
            "seed",
            f"must be a whole number from 0 to {MAX_SEED}.",
        )
        for name in ("beta_1", "beta_2"):
            need(0.0 <= getattr(self, name) < 1.0, name, "must be in [0, 1).")
        need(self.lr_decay_steps >= 0, "lr_decay_steps", "must be 0 (off) or positive.")
        need(0.0 < self.lr_decay_rate <= 1.0, "lr_decay_rate", "must be in (0, 1].")
        for name in (
            "log_every",
            "image_every",
            "checkpoint_every",
            "keep_checkpoints",
            "val_every",
        ):
            need(getattr(self, name) >= 1, name, "must be at least 1.")
        need(self.generator in ("full", "lite"), "generator", "must be full or lite.")
        need(
            self.freeze in (None, "attention", "autoencoder"),
            "freeze",
            "must be attention or autoencoder.",
        )
        choices = {
            "precision": ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
            "strategy": ("auto", "default", "mirrored", "multi_worker"),
        }
        for name, allowed in choices.items():
            need(getattr(self, name) in allowed, name, f"must be one of {', '.join(allowed)}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values."""
        values = dataclasses.asdict(self)
        values["lambdas"] = list(self.lambdas)
        return values


def _coerce(name: str, value: Any, default: Any, source: str) -> Any:
    """Converts a TOML/JSON value to the field's type, or raises ConfigError."""
    try:
        if name == "lambdas":
            return tuple(float(v) for v in value)
        if value is None:
            return None
        if name in ("data_dir", "val_dir", "out_dir", "vgg_weights"):
            return os.fspath(value)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if isinstance(default, int) or name in ("steps", "epochs", "steps_per_epoch", "seed"):
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError("expected a whole number")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError("expected a number")
            return float(value)
        return str(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"{source}: bad value for '{name}': {value!r} ({err}).") from err


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a TOML file of settings (top level, or under a `[train]` table).

    Raises:
        ConfigError: the file is missing or not valid TOML.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError as err:
        raise ConfigError(f"--config: file not found: {path}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"--config: {path} is not a TOML file: it is not UTF-8 text "
            f"(byte {err.start} is {err.object[err.start : err.start + 1]!r})"
        ) from err
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"--config: cannot read {path}: {err}") from err
    if set(values) == {"train"} and isinstance(values["train"], dict):
        values = values["train"]
    return values


def load_saved(path: str | os.PathLike) -> dict[str, Any]:
    """The user settings saved in a run's `config.json` (its `"config"` table)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read the saved configuration {path}: {err}") from err
    return saved.get("config", {})


def write_json_atomic(path: str | os.PathLike, values: Mapping[str, Any]) -> None:
    """Writes JSON to a temporary name, then renames it over `path`."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
