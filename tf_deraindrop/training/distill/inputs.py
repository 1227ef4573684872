"""The inputs of a distillation run: frames found and checked once, then a crop stream per epoch.

`DistillInputs.prepare` finds the frames, holds out the validation ones,
checks every training frame against the crop size and fills the teacher
cache; `train(epoch, skip)` then hands out the epoch's `CropStream` dataset,
which draws its crops from a seed of the run's seed and the epoch, so that a
resumed epoch sees the same batches (the skipped ones are never decoded).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from tf_deraindrop.training.distill.config import DistillConfig, DistillError
from tf_deraindrop.training.distill.frames import (
    Example,
    FrameStore,
    find_examples,
    split_validation,
)
from tf_deraindrop.training.distill.teacher import TeacherCache
from tf_deraindrop.utils.generator_data import GeneratorSource


def epoch_seed(seed: int, epoch: int) -> int:
    """The crop seed of one epoch: new crops every epoch, the same ones on resume."""
    return (seed * 1_000_003 + epoch * 7_919 + 101) % (2**31 - 1)


class CropStream:
    """Batches of random crops (and flips) of the training frames, reproducible per epoch.

    Each batch is a dict: `rainy` (and `clean`, `has_clean` for pairs) and,
    with a teacher cache, `t_quarter`, `t_half`, `t_out`, `t_attention`,
    the same crops of the cached teacher outputs. `source` ends its
    datasets' generators on Ctrl-C (`tf_deraindrop.utils.generator_data`).
    """

    def __init__(self, examples, frames, crop, batch, paired, cache=None, sizes=None):
        self.examples, self.frames, self.crop, self.batch = examples, frames, crop, batch
        self.paired, self.cache = paired, cache
        self.sizes = sizes
        self.source = GeneratorSource()

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
        # Stoppable: a from_generator iterator destroyed while its thread is in
        # the generator hangs the process (`stop_on_interrupt`).
        ds = self.source.dataset(lambda: self.batches(seed, steps, skip), self.signature())
        return ds.prefetch(2)


def _frame_sizes(examples: list[Example], frames: FrameStore, crop: int) -> list[tuple[int, int]]:
    """`(h, w)` of each rainy frame; DistillError for one under `crop` or a mismatched partner."""
    sizes = []
    for example in examples:
        h, w = frames.get(example.rainy).shape[:2]
        if min(h, w) < crop:
            raise DistillError(f"{example.rainy}: {w} x {h} is smaller than --crop-size {crop}")
        if example.clean and frames.get(example.clean).shape[:2] != (h, w):
            raise DistillError(f"{example.clean}: not the size of {example.rainy}")
        sizes.append((h, w))
    return sizes


@dataclasses.dataclass
class DistillInputs:
    """The checked frames of one run and the streams made from them.

    Build it with `DistillInputs.prepare(config, teacher)`.

    Attributes:
        train_examples: the training frames, each checked against the crop size.
        val_examples: the validation frames (may be empty), teacher outputs cached.
        paired: whether there is ground truth (Raindrop-layout pairs).
        frames: the `FrameStore` of all of them.
        cache: the `TeacherCache` (validation frames; training frames with `cache_teacher`).
        stream: the training frames' `CropStream`.
    """

    config: DistillConfig
    train_examples: list[Example]
    val_examples: list[Example]
    paired: bool
    frames: FrameStore
    cache: TeacherCache
    stream: CropStream

    @classmethod
    def prepare(cls, config: DistillConfig, teacher) -> DistillInputs:
        """Finds, splits and checks the frames; runs the teacher on those it caches.

        Raises:
            DistillError: no usable frame, a frame under the crop size, an unreadable video.
        """
        frames_dir = os.path.join(config.out_dir, "frames")
        examples, paired = find_examples(config.data_dir, frames_dir, config.frame_every)
        if config.val_dir:
            val, val_paired = find_examples(config.val_dir, frames_dir, config.frame_every)
            train, paired = examples, paired or val_paired
        else:
            train, val = split_validation(examples, config.val_fraction, config.seed)
        frames = FrameStore()
        sizes = _frame_sizes(train, frames, config.crop_size)
        cache = TeacherCache(os.path.join(config.out_dir, "teacher_cache"))
        cache.fill(val, frames, teacher, "validation")
        if config.cache_teacher:
            cache.fill(train, frames, teacher, "training")
        crops = cache if config.cache_teacher else None
        stream = CropStream(
            train, frames, config.crop_size, config.batch_size, paired, crops, sizes
        )
        return cls(config, train, val, paired, frames, cache, stream)

    def train(self, epoch: int, skip: int = 0):
        """The dataset of `epoch`, `skip` batches in (their crops are never read)."""
        seed = epoch_seed(self.config.seed, epoch)
        return self.stream.dataset(seed, self.config.steps_per_epoch, skip)

    def sample(self, teacher) -> tuple[np.ndarray, np.ndarray] | None:
        """Centre crops of up to 3 frames and the teacher's outputs on them (for the panels)."""
        crop = self.config.crop_size
        rainy = []
        for example in (self.val_examples or self.train_examples)[:3]:
            image = self.frames.get(example.rainy)
            h, w = image.shape[:2]
            y, x = 4 * ((h - crop) // 8), 4 * ((w - crop) // 8)
            rainy.append(image[y : y + crop, x : x + crop])
        if not rainy:
            return None
        rainy = np.stack(rainy)
        return rainy, np.asarray(teacher.predict_on_batch(rainy)["outputs"][-1])
