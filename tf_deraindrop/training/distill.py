"""Distilling a generator into a `LiteGenerator`: data, the training step, and the run.

The teacher (the full generator, from `gen.pkl` or a `.keras` file) labels
rainy frames; the student learns its outputs. `Distiller` is a `keras.Model`
whose `train_step` takes a batch of rainy crops and:

* `L1` between the student's and the teacher's outputs at the three scales
  (`S_quarter`, `S_half`, `O`), weighted by the paper's lambdas;
* the student's attention maps `A_1..A_N` against the teacher's final map
  `A_N`, with the paper's theta weighting (`losses.attention_loss`, the
  teacher's map standing where the paper has the binary mask);
* with Raindrop-layout pairs, the paper's multi-scale loss against the
  ground truth as well (`gt_weight`);
* optionally the perceptual (VGG16) term against the teacher's output and a
  small adversarial term from a discriminator that takes the teacher's
  outputs as real.

Teacher outputs are computed on the fly on each crop (in the teacher's
precision, `mixed_bfloat16` where the CPU has bfloat16 instructions), or once
per frame on whole frames and cached on disk (`cache_teacher`); validation
frames are always cached. A run keeps `train`'s conventions: `config.json`,
checkpoints that resume after `kill -9` (the data stream of each epoch is
rebuilt from the seed and the step), TensorBoard scalars and panels (rainy |
teacher | student | attention maps), and `generator.keras`, the student with
the best validation PSNR against the teacher.

The command line is `python -m tf_deraindrop.distill`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tf_deraindrop import losses
from tf_deraindrop.training.callbacks import TensorBoardLogger
from tf_deraindrop.training.checkpoints import CheckpointSaver

#: Losses `train_step` reports (those that apply to the run).
TERMS = ("distill", "attention", "ground_truth", "perceptual", "g_adversarial", "total")


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
        need(len(self.lambdas) == 3, "lambdas", "needs three weights (1/4, 1/2, full size).")
        for name in ("attention_weight", "gt_weight", "perceptual_weight", "gan_weight"):
            need(getattr(self, name) >= 0, name, "must be zero or more.")
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


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Example:
    """One frame to learn from: a rainy image file, its clean partner if any."""

    name: str
    rainy: str
    clean: str | None = None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def extract_frames(video: str, folder: str, every: float) -> list[str]:
    """Frames of `video`, one each `every` seconds, as PNGs in `folder` (once: kept for resume).

    Raises:
        DistillError: the video cannot be read (naming it).
    """
    from tf_deraindrop.images import write_image
    from tf_deraindrop.video import VideoError, iter_frames

    stem = _safe_name(os.path.splitext(os.path.basename(video))[0])
    target = os.path.join(folder, stem)
    done = os.path.join(target, ".complete")
    if not os.path.isfile(done):
        partial = target + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        count = 0
        try:
            for frame in iter_frames(video, every=every):
                write_image(os.path.join(partial, f"{stem}_{frame.index:06d}.png"), frame.image)
                count += 1
        except (VideoError, OSError) as err:
            shutil.rmtree(partial, ignore_errors=True)
            raise DistillError(f"{video}: cannot read the video ({err})") from err
        if count == 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise DistillError(f"{video}: no frame could be decoded")
        with open(os.path.join(partial, ".complete"), "w", encoding="utf-8") as f:
            f.write(f"{count} frames every {every} s\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    return sorted(os.path.join(target, n) for n in os.listdir(target) if n.endswith(".png"))


def find_examples(data_dir: str, frames_dir: str, frame_every: float) -> tuple[list[Example], bool]:
    """The frames of `data_dir`: Raindrop-layout pairs, or rainy images and videos.

    Returns:
        `(examples, paired)`.

    Raises:
        DistillError: no such folder, no usable file, or an unreadable video.
    """
    from tf_deraindrop.images import IMAGE_SUFFIXES

    if not os.path.isdir(data_dir):
        raise DistillError(f"--data-dir {data_dir}: no such folder")
    if os.path.isdir(os.path.join(data_dir, "data")) and os.path.isdir(
        os.path.join(data_dir, "gt")
    ):
        from tf_deraindrop.data import DatasetError, find_pairs

        try:
            pairs = find_pairs(data_dir)
        except DatasetError as err:
            raise DistillError(str(err)) from err
        return [Example(p.name, p.rainy, p.clean) for p in pairs], True
    from tf_deraindrop.video import VIDEO_SUFFIXES

    examples = []
    names = sorted(os.listdir(data_dir))
    for name in names:
        path = os.path.join(data_dir, name)
        suffix = os.path.splitext(name)[1].lower()
        if not os.path.isfile(path):
            continue
        if suffix in IMAGE_SUFFIXES:
            examples.append(Example(os.path.splitext(name)[0], path))
        elif suffix in VIDEO_SUFFIXES:
            for frame in extract_frames(path, frames_dir, frame_every):
                examples.append(Example(os.path.splitext(os.path.basename(frame))[0], frame))
    if not examples:
        raise DistillError(
            f"--data-dir {data_dir}: no rainy images ({', '.join(IMAGE_SUFFIXES)}), videos "
            f"({', '.join(VIDEO_SUFFIXES[:4])}, ...) or Raindrop-layout pairs (data/, gt/)"
        )
    return examples, False


def split_validation(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded split; at least one of each when there are two or more examples and a fraction."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    order = np.random.default_rng(seed).permutation(len(examples))
    n_val = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    val = sorted(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in set(val)], [examples[i] for i in val]


def _read(path: str) -> np.ndarray:
    from tf_deraindrop.images import ImageReadError, read_image

    try:
        image = read_image(path)
    except ImageReadError as err:
        raise DistillError(str(err)) from err
    h, w = image.shape[:2]
    # Multiples of 4, so that the 1/2 and 1/4 outputs line up with crops.
    return image[: h - h % 4, : w - w % 4]


class FrameStore:
    """Decoded frames (uint8) kept in memory up to a budget, read again beyond it."""

    def __init__(self, budget_bytes: int = 2 << 30):
        self.budget = int(budget_bytes)
        self.used = 0
        self._cache: dict[str, np.ndarray] = {}

    def get(self, path: str) -> np.ndarray:
        """The frame as float32 RGB in [0, 1], cropped to multiples of 4."""
        array = self._cache.get(path)
        if array is None:
            from tf_deraindrop.images import to_uint8

            array = to_uint8(_read(path))
            if self.used + array.nbytes <= self.budget:
                self._cache[path] = array
                self.used += array.nbytes
        return array.astype(np.float32) / 255.0


class TeacherCache:
    """The teacher's outputs on whole frames, one `.npz` (float16) per frame under `folder`."""

    KEYS = ("quarter", "half", "out", "attention")

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    def path(self, example: Example) -> str:
        # The rainy file's path in the key: frames of two folders may share a name.
        digest = hashlib.sha1(os.path.abspath(example.rainy).encode()).hexdigest()[:10]
        return os.path.join(self.folder, f"{_safe_name(example.name)}_{digest}.npz")

    def fill(self, examples: Sequence[Example], frames: FrameStore, teacher, what: str) -> None:
        """Runs the teacher on every example not yet cached (written atomically)."""
        missing = [e for e in examples if not os.path.isfile(self.path(e))]
        if not missing:
            return
        print(f"Teacher outputs for {len(missing)} {what} frame(s) ...", flush=True)
        for example in missing:
            image = frames.get(example.rainy)
            result = teacher.predict_on_batch(image[None])
            arrays = [result["outputs"][0], result["outputs"][1], result["outputs"][2]]
            arrays.append(result["attention"][-1])
            values = {k: np.asarray(a)[0].astype(np.float16) for k, a in zip(self.KEYS, arrays)}
            path = self.path(example)
            tmp = f"{path}.partial{os.getpid()}.npz"
            np.savez(tmp, **values)
            os.replace(tmp, path)

    def get(self, example: Example) -> dict[str, np.ndarray]:
        with np.load(self.path(example)) as data:
            return {k: data[k].astype(np.float32) for k in self.KEYS}


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 101) % (2**31 - 1)


class CropStream:
    """Batches of random crops (and flips) of the training frames, reproducible per epoch.

    Each batch is a dict: `rainy` (and `clean`, `has_clean` for pairs) and,
    with a teacher cache, `t_quarter`, `t_half`, `t_out`, `t_attention`,
    the same crops of the cached teacher outputs.
    """

    def __init__(self, examples, frames, crop, batch, paired, cache=None, sizes=None):
        self.examples, self.frames, self.crop, self.batch = examples, frames, crop, batch
        self.paired, self.cache = paired, cache
        self.sizes = sizes

    def plan(self, seed: int, steps: int) -> list[list[tuple[int, int, int, bool]]]:
        """`steps` batches of `(example, y, x, flip)`, all drawn up front (cheap to skip)."""
        rng = np.random.default_rng(seed)
        batches = []
        for _ in range(steps):
            items = []
            for _ in range(self.batch):
                i = int(rng.integers(len(self.examples)))
                h, w = self.sizes[i]
                y = 4 * int(rng.integers((h - self.crop) // 4 + 1))
                x = 4 * int(rng.integers((w - self.crop) // 4 + 1))
                items.append((i, y, x, bool(rng.integers(2))))
            batches.append(items)
        return batches

    def _item(self, i, y, x, flip) -> dict[str, np.ndarray]:
        c = self.crop
        example = self.examples[i]
        out = {"rainy": self.frames.get(example.rainy)[y : y + c, x : x + c]}
        if self.paired:
            if example.clean:
                out["clean"] = self.frames.get(example.clean)[y : y + c, x : x + c]
                out["has_clean"] = np.float32(1.0)
            else:
                out["clean"] = np.zeros_like(out["rainy"])
                out["has_clean"] = np.float32(0.0)
        if self.cache is not None:
            t = self.cache.get(example)
            for key, scale in (("quarter", 4), ("half", 2), ("out", 1), ("attention", 1)):
                ys, xs, cs = y // scale, x // scale, c // scale
                out[f"t_{key}"] = t[key][ys : ys + cs, xs : xs + cs]
        if flip:
            out = {k: v[:, ::-1] if np.ndim(v) == 3 else v for k, v in out.items()}
        return {k: np.ascontiguousarray(v) if np.ndim(v) else v for k, v in out.items()}

    def signature(self) -> dict:
        import tensorflow as tf

        c = self.crop
        spec = {"rainy": tf.TensorSpec((None, c, c, 3), tf.float32)}
        if self.paired:
            spec["clean"] = tf.TensorSpec((None, c, c, 3), tf.float32)
            spec["has_clean"] = tf.TensorSpec((None,), tf.float32)
        if self.cache is not None:
            spec["t_quarter"] = tf.TensorSpec((None, c // 4, c // 4, 3), tf.float32)
            spec["t_half"] = tf.TensorSpec((None, c // 2, c // 2, 3), tf.float32)
            spec["t_out"] = tf.TensorSpec((None, c, c, 3), tf.float32)
            spec["t_attention"] = tf.TensorSpec((None, c, c, 1), tf.float32)
        return spec

    def batches(self, seed: int, steps: int, skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
        for items in self.plan(seed, steps)[skip:]:
            parts = [self._item(*item) for item in items]
            yield {k: np.stack([p[k] for p in parts]) for k in parts[0]}

    def dataset(self, seed: int, steps: int, skip: int = 0):
        import tensorflow as tf

        ds = tf.data.Dataset.from_generator(
            lambda: self.batches(seed, steps, skip), output_signature=self.signature()
        )
        return ds.prefetch(2)


# --------------------------------------------------------------------------- the model


def _l1(a, b):
    a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
    return ops.mean(ops.abs(a - b), axis=(1, 2, 3))


class Distiller(keras.Model):
    """Student, teacher (frozen) and the optional discriminator and perceptual loss.

    `generator` is the student (the name the run's callbacks look for).

    Args:
        student: a `LiteGenerator` (or any model with the `Generator` contract).
        teacher: the frozen teacher, or None when every batch brings cached outputs.
        discriminator: a `Discriminator` for the adversarial term, or None.
        perceptual: a `losses.PerceptualLoss`, or None.

    Example:
        >>> distiller = Distiller(LiteGenerator(), teacher)  # doctest: +SKIP
        >>> distiller.compile(keras.optimizers.Adam(1e-3))  # doctest: +SKIP
    """

    def __init__(self, student, teacher=None, discriminator=None, perceptual=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.discriminator = discriminator
        self.perceptual = perceptual
        self.global_step = keras.Variable(0, dtype="int64", trainable=False, name="step")
        self.trackers: dict[str, keras.metrics.Mean] = {}

    def compile(
        self,
        optimizer,
        d_optimizer=None,
        *,
        theta: float = 0.8,
        lambdas: Sequence[float] = (0.6, 0.8, 1.0),
        attention_weight: float = 1.0,
        gt_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        gan_weight: float = 0.0,
        paired: bool = False,
    ):
        """Sets the optimizers and the loss weights."""
        super().compile(optimizer=None)
        self.g_optimizer, self.d_optimizer = optimizer, d_optimizer
        self.theta, self.lambdas = float(theta), tuple(float(v) for v in lambdas)
        self.attention_weight, self.gt_weight = float(attention_weight), float(gt_weight)
        self.perceptual_weight = float(perceptual_weight) if self.perceptual else 0.0
        self.gan_weight = float(gan_weight) if self.discriminator is not None else 0.0
        self.paired = bool(paired)
        names = ["distill", "attention", "total"]
        if self.paired:
            names.insert(2, "ground_truth")
        if self.perceptual_weight:
            names.insert(-1, "perceptual")
        if self.gan_weight:
            names[-1:-1] = ["g_adversarial", "d_adversarial"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.generator.build((None, None, None, 3))
        self.g_optimizer.build(self.generator.trainable_variables)
        if self.gan_weight:
            self.discriminator.build((None, None, None, 3))
            self.d_optimizer.build(self.discriminator.trainable_variables)
        # Everything is built: Keras must not trace call() on a batch (a dict here).
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=None):
        return self.generator(inputs, training=training)

    def teacher_targets(self, data):
        """`([T_quarter, T_half, T_out], T_attention)`: cached, or the teacher's now."""
        if "t_out" in data:
            return [data["t_quarter"], data["t_half"], data["t_out"]], data["t_attention"]
        result = self.teacher(data["rainy"], training=False)
        outputs = [ops.stop_gradient(ops.cast(o, "float32")) for o in result["outputs"]]
        return outputs, ops.stop_gradient(ops.cast(result["attention"][-1], "float32"))

    def train_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # train_on_batch packs (x,)
        rainy = data["rainy"]
        targets, target_attention = self.teacher_targets(data)
        terms = {}
        if self.gan_weight:
            with tf.GradientTape() as d_tape:
                fake = ops.stop_gradient(self.generator(rainy, training=True)["outputs"][-1])
                real_logit = self.discriminator(targets[-1], training=True)["logit"]
                fake_logit = self.discriminator(fake, training=True)["logit"]
                d_loss = ops.mean(losses.discriminator_adversarial_loss(real_logit, fake_logit))
            d_vars = self.discriminator.trainable_variables
            self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars))
            terms["d_adversarial"] = d_loss
        with tf.GradientTape() as tape:
            result = self.generator(rainy, training=True)
            outputs = result["outputs"]
            distill = sum(lam * _l1(s, t) for lam, s, t in zip(self.lambdas, outputs, targets))
            attention = losses.attention_loss(result["attention"], target_attention, self.theta)
            total = distill + self.attention_weight * attention
            terms.update(distill=distill, attention=attention)
            if self.paired:
                gt = losses.multiscale_loss(outputs, data["clean"], self.lambdas)
                gt = gt * data["has_clean"]
                total = total + self.gt_weight * gt
                terms["ground_truth"] = gt
            if self.perceptual_weight:
                perceptual = self.perceptual(outputs[-1], targets[-1])
                total = total + self.perceptual_weight * perceptual
                terms["perceptual"] = perceptual
            if self.gan_weight:
                logit = self.discriminator(outputs[-1], training=True)["logit"]
                adversarial = losses.generator_adversarial_loss(logit)
                total = total + self.gan_weight * adversarial
                terms["g_adversarial"] = adversarial
            loss = ops.mean(total)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.global_step.assign_add(1)
        terms["total"] = total
        for name, value in terms.items():
            self.trackers[name].update_state(ops.mean(value))
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        logs["lr"] = ops.cast(self.g_optimizer.learning_rate, "float32")
        return logs

    def checkpoint(self) -> tf.train.Checkpoint:
        """What a resumed run needs: student, optimizer(s), step (not the teacher)."""
        parts = {
            "generator": self.generator,
            "optimizer": self.g_optimizer,
            "global_step": self.global_step,
        }
        if self.gan_weight:
            parts.update(discriminator=self.discriminator, d_optimizer=self.d_optimizer)
        return tf.train.Checkpoint(**parts)


# --------------------------------------------------------------------------- the run


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (AVX512_BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_teacher_precision(name: str) -> str:
    """`auto`: `mixed_bfloat16` on a CPU with bfloat16 instructions, else float32.

    On 2 cores with AVX512_BF16 the teacher runs about 3x faster in
    bfloat16 (benchmarks/results/generator_cpu.txt).
    """
    if name != "auto":
        return name
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def load_teacher(path: str):
    """The teacher generator in `path`, float32. DistillError naming the file if unusable."""
    from tf_deraindrop.weights import WeightsError, float32_generator, load_generator_weights

    try:
        teacher = load_generator_weights(path)
    except WeightsError as err:
        raise DistillError(f"--teacher {path}: {err}") from err
    return float32_generator(teacher)


def teacher_in(teacher, precision: str):
    """`teacher` under `precision` (a twin with the same weights), frozen."""
    if precision == "float32":
        return teacher
    twin = type(teacher).from_config({**teacher.get_config(), "dtype": precision})
    twin.build((None, None, None, 3))
    twin.set_weights(teacher.get_weights())
    twin.trainable = False
    return twin


@dataclasses.dataclass
class DistillResult:
    out_dir: str
    start_step: int
    step: int
    generator_path: str | None
    history: dict[str, list[float]]
    seconds_per_step: float | None
    stopped_on_nan: bool = False


class Validation(keras.callbacks.Callback):
    """Adds `val_psnr` (student vs cached teacher, RGB, whole frames) to the epoch's logs.

    With pairs, also `val_psnr_y_gt` and `val_teacher_psnr_y_gt`: the
    student's and the teacher's Y-PSNR against the ground truth. It runs
    before the callbacks that read these logs (TensorBoard, best model).

    Args:
        examples: the validation frames.
        frames: their `FrameStore`.
        cache: the `TeacherCache` holding the teacher's outputs on them.
    """

    def __init__(self, examples, frames, cache):
        super().__init__()
        self.examples, self.frames, self.cache = examples, frames, cache
        self._run = None

    def on_epoch_end(self, epoch, logs=None):
        from tf_deraindrop.images import to_uint8
        from tf_deraindrop.metrics import psnr, psnr_y

        if logs is None or not self.examples:
            return
        if self._run is None:
            self._run = tf.function(
                lambda x: self.model.generator(x, training=False)["outputs"][-1],
                reduce_retracing=True,
            )
        student_teacher, student_gt, teacher_gt = [], [], []
        for example in self.examples:
            image = self.frames.get(example.rainy)
            out = self._run(tf.constant(image[None])).numpy()[0]
            target = self.cache.get(example)["out"]
            student_teacher.append(psnr(out, target))
            if example.clean:
                clean = to_uint8(self.frames.get(example.clean))
                student_gt.append(psnr_y(to_uint8(out), clean))
                teacher_gt.append(psnr_y(to_uint8(target), clean))
        logs["val_psnr"] = float(np.mean(student_teacher))
        if student_gt:
            logs["val_psnr_y_gt"] = float(np.mean(student_gt))
            logs["val_teacher_psnr_y_gt"] = float(np.mean(teacher_gt))


class DistillLogger(TensorBoardLogger):
    """The run's TensorBoard logger, with panels rainy | teacher | student | A_1..A_N.

    `sample` is `(rainy, teacher output)` of a few frames.
    """

    def write_panel(self, step: int) -> str | None:
        from tf_deraindrop.images import write_image
        from tf_deraindrop.visualize import heat_map, side_by_side

        if self.sample is None or step == self._last_image_step:
            return None
        self._last_image_step = step
        rainy, teacher = self.sample
        result = self.model.generator(rainy, training=False)
        student = np.clip(np.nan_to_num(np.asarray(result["outputs"][-1])), 0, 1)
        maps = [np.asarray(a) for a in result["attention"]]
        rows = []
        for i in range(rainy.shape[0]):
            tiles = [rainy[i], np.clip(teacher[i], 0, 1), student[i]]
            tiles += [heat_map(a[i]) for a in maps]
            rows.append(side_by_side([t.astype(np.float32) for t in tiles], gap=2, fill=1.0))
        panel = np.concatenate(rows, axis=0)
        with self.writer.as_default(step=step):
            tf.summary.image(
                "panels/rainy_teacher_student_attention",
                panel[None],
                step=step,
                description="Rows: frames. Columns: rainy, teacher output, student output, "
                "student attention maps A1..AN (heat maps).",
            )
        if self.samples_dir:
            write_image(os.path.join(self.samples_dir, f"step_{step:08d}.png"), panel)
            self.last_panel = os.path.join(self.samples_dir, "latest.png")
            write_image(self.last_panel, panel)
        return self.last_panel


class DistillSaver(CheckpointSaver):
    """`train`'s checkpoint saver, checking the student's (and discriminator's) weights."""

    def _weights_finite(self) -> bool:
        variables = list(self.model.generator.weights)
        if self.model.gan_weight:
            variables += self.model.discriminator.weights
        return all(
            bool(tf.reduce_all(tf.math.is_finite(v.value)).numpy())
            for v in variables
            if "float" in str(v.dtype)
        )


def _sample_batch(examples, frames, teacher, crop) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre crops of up to 3 frames and the teacher's outputs on them (for the panels)."""
    rainy = []
    for example in examples[:3]:
        image = frames.get(example.rainy)
        h, w = image.shape[:2]
        y, x = 4 * ((h - crop) // 8), 4 * ((w - crop) // 8)
        rainy.append(image[y : y + crop, x : x + crop])
    if not rainy:
        return None
    rainy = np.stack(rainy)
    return rainy, np.asarray(teacher.predict_on_batch(rainy)["outputs"][-1])


def distill(config: DistillConfig, verbose: str | int = "auto") -> DistillResult:
    """Runs (or resumes) a distillation run; see the module docstring.

    Raises:
        DistillError: a bad teacher, data folder, video or setting (the message names it).
        RunLockedError, ResumeError, CheckpointWriteError: as `train`.
    """
    import time

    from tf_deraindrop.models import Discriminator, LiteGenerator
    from tf_deraindrop.training import callbacks as cb
    from tf_deraindrop.training.checkpoints import LossWatch, ResumeError, restore_run
    from tf_deraindrop.training.config import write_json_atomic
    from tf_deraindrop.training.distribute import precision_policy
    from tf_deraindrop.training.lock import RunLock

    config = config.validated()
    if config.seed is None:
        config = dataclasses.replace(config, seed=int(np.random.default_rng().integers(2**31 - 1)))
    out = config.out_dir
    teacher = load_teacher(config.teacher)  # a bad teacher fails before any data work
    os.makedirs(out, exist_ok=True)
    lock = RunLock(out)
    lock.acquire()
    try:
        keras.utils.set_random_seed(config.seed)
        frames_dir = os.path.join(out, "frames")
        examples, paired = find_examples(config.data_dir, frames_dir, config.frame_every)
        if config.val_dir:
            val, val_paired = find_examples(config.val_dir, frames_dir, config.frame_every)
            train_examples, paired = examples, paired or val_paired
        else:
            train_examples, val = split_validation(examples, config.val_fraction, config.seed)
        frames = FrameStore()
        sizes = []
        for example in train_examples:
            h, w = frames.get(example.rainy).shape[:2]
            if min(h, w) < config.crop_size:
                raise DistillError(
                    f"{example.rainy}: {w} x {h} is smaller than --crop-size {config.crop_size}"
                )
            if example.clean and frames.get(example.clean).shape[:2] != (h, w):
                raise DistillError(f"{example.clean}: not the size of {example.rainy}")
            sizes.append((h, w))
        cache = TeacherCache(os.path.join(out, "teacher_cache"))
        cache.fill(val, frames, teacher, "validation")
        if config.cache_teacher:
            cache.fill(train_examples, frames, teacher, "training")
        precision = resolve_teacher_precision(config.teacher_precision)
        online_teacher = None if config.cache_teacher else teacher_in(teacher, precision)
        stream = CropStream(
            train_examples,
            frames,
            config.crop_size,
            config.batch_size,
            paired,
            cache if config.cache_teacher else None,
            sizes,
        )

        student = LiteGenerator.from_preset(config.preset)
        lr = config.lr
        if config.lr_decay_steps:
            lr = keras.optimizers.schedules.ExponentialDecay(
                lr, config.lr_decay_steps, config.lr_decay_rate, staircase=True
            )
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
        model = Distiller(student, online_teacher, discriminator, perceptual)
        model.compile(
            keras.optimizers.Adam(lr, name="adam"),
            d_optimizer,
            theta=config.theta,
            lambdas=config.lambdas,
            attention_weight=config.attention_weight,
            gt_weight=config.gt_weight,
            perceptual_weight=config.perceptual_weight,
            gan_weight=config.gan_weight,
            paired=paired,
        )
        ckpt_dir = os.path.join(out, "checkpoints")
        try:
            restore_run(model.checkpoint(), ckpt_dir)
        except ResumeError as err:
            raise DistillError(str(err)) from err
        start = int(model.global_step.numpy())
        manager = tf.train.CheckpointManager(
            model.checkpoint(), ckpt_dir, max_to_keep=config.keep_checkpoints
        )
        record = {
            "config": config.to_dict(),
            "resolved": {
                "training_frames": len(train_examples),
                "validation_frames": len(val),
                "paired": paired,
                "teacher_outputs": "cached"
                if config.cache_teacher
                else f"on the fly ({precision})",
                "student_parameters": int(student.count_params()),
                "student_config": student.get_config(),
                "teacher_parameters": int(teacher.count_params()),
                "resumed_from_step": start,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
        }
        write_json_atomic(os.path.join(out, "config.json"), record)

        watch = LossWatch(keys=("total",), spike_keys=("distill", "attention"))
        saver = DistillSaver(manager, config.checkpoint_every, watch)
        logger = DistillLogger(
            os.path.join(out, "logs"),
            sample=_sample_batch(val or train_examples, frames, teacher, config.crop_size),
            samples_dir=os.path.join(out, "samples"),
            config=record,
            log_every=config.log_every,
            image_every=config.image_every,
        )
        generator_path = os.path.join(out, "generator.keras")
        callbacks = [Validation(val, frames, cache), watch, saver, logger]
        best = None
        if val:
            best = cb.BestGeneratorSaver(generator_path, monitor="val_psnr")
            callbacks.append(best)
        total_epochs = math.ceil(config.steps / config.steps_per_epoch)
        progress = cb.RunProgress(total_epochs)
        progress.SHOWN = ("total", "distill", "attention", "val_psnr")
        callbacks.append(progress)

        print(
            f"{'Resuming' if start else 'Starting'} distillation at step {start} of "
            f"{config.steps}: {len(train_examples)} training and {len(val)} validation frames"
            f"{' (pairs)' if paired else ''}, student {config.preset} "
            f"({student.count_params():,} parameters), teacher outputs "
            f"{record['resolved']['teacher_outputs']}.",
            flush=True,
        )
        history: dict[str, list[float]] = {}
        epoch, skip = divmod(start, config.steps_per_epoch)
        started, first_step = time.perf_counter(), start
        try:
            while epoch < total_epochs and watch.stopped_at is None:
                steps = min(config.steps_per_epoch, config.steps - epoch * config.steps_per_epoch)
                steps -= skip
                if steps <= 0:
                    break
                seed = epoch_seed(config.seed, epoch)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Your input ran out of data")
                    fit = model.fit(
                        stream.dataset(seed, config.steps_per_epoch, skip),
                        epochs=epoch + 1,
                        initial_epoch=epoch,
                        steps_per_epoch=steps,
                        callbacks=callbacks,
                        verbose=verbose,
                        shuffle=False,  # the crop stream shuffles
                    )
                for key, values in fit.history.items():
                    history.setdefault(key, []).extend(float(v) for v in values)
                epoch, skip = epoch + 1, 0
        finally:
            logger.close()
        step = int(model.global_step.numpy())
        elapsed = time.perf_counter() - started
        if watch.stopped_at is None and (best is None or not os.path.isfile(generator_path)):
            cb.export_generator(student, generator_path)
    finally:
        lock.release()
    return DistillResult(
        out_dir=out,
        start_step=start,
        step=step,
        generator_path=generator_path if os.path.isfile(generator_path) else None,
        history=history,
        seconds_per_step=elapsed / (step - first_step) if step > first_step else None,
        stopped_on_nan=watch.stopped_at is not None,
    )


def main_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the CLI reports as bad input (exit status 2)."""
    from tf_deraindrop.training.checkpoints import CheckpointWriteError
    from tf_deraindrop.training.lock import RunLockedError

    return (DistillError, RunLockedError, CheckpointWriteError)
