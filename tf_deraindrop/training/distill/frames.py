"""The frames a student learns from: rainy images, frames of videos, or Raindrop-layout pairs.

`find_examples` lists them (extracting a video's frames once into the run
folder, so that a resumed run finds them again), `split_validation` holds
some out, and `FrameStore` decodes them, keeping what fits in memory.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil

import numpy as np

from tf_deraindrop.training.distill.config import DistillError
from tf_deraindrop.utils.files import atomic_path, remove_stale_partials


@dataclasses.dataclass(frozen=True)
class Example:
    """One frame to learn from: a rainy image file, its clean partner if any."""

    name: str
    rainy: str
    clean: str | None = None


def safe_name(text: str) -> str:
    """`text` with every run of characters unsafe in a file name replaced by `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _write_frames(video: str, folder: str, stem: str, every: float) -> int:
    """Writes the frames of `video` into `folder`; returns how many (DistillError if unreadable)."""
    from tf_deraindrop.utils.images import write_image
    from tf_deraindrop.video import VideoError, iter_frames

    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    count = 0
    try:
        for frame in iter_frames(video, every=every):
            write_image(os.path.join(folder, f"{stem}_{frame.index:06d}.png"), frame.image)
            count += 1
    except (VideoError, OSError) as err:
        raise DistillError(f"{video}: cannot read the video ({err})") from err
    if count == 0:
        raise DistillError(f"{video}: no frame could be decoded")
    return count


def extract_frames(video: str, folder: str, every: float) -> list[str]:
    """Frames of `video`, one each `every` seconds, as PNGs in `folder` (once: kept for resume).

    Raises:
        DistillError: the video cannot be read (naming it).
    """
    stem = safe_name(os.path.splitext(os.path.basename(video))[0])
    target = os.path.join(folder, stem)
    if not os.path.isfile(os.path.join(target, ".complete")):
        remove_stale_partials(folder)  # of a run killed while extracting
        with atomic_path(target) as partial:
            count = _write_frames(video, partial, stem, every)
            with open(os.path.join(partial, ".complete"), "w", encoding="utf-8") as f:
                f.write(f"{count} frames every {every} s\n")
            shutil.rmtree(target, ignore_errors=True)
    return sorted(os.path.join(target, n) for n in os.listdir(target) if n.endswith(".png"))


def _pairs(data_dir: str) -> list[Example]:
    from tf_deraindrop.data import DatasetError, find_pairs

    try:
        pairs = find_pairs(data_dir)
    except DatasetError as err:
        raise DistillError(str(err)) from err
    return [Example(p.name, p.rainy, p.clean) for p in pairs]


def _rainy_files(data_dir: str, frames_dir: str, frame_every: float) -> list[Example]:
    from tf_deraindrop.utils.images import IMAGE_SUFFIXES
    from tf_deraindrop.video import VIDEO_SUFFIXES

    examples = []
    for name in sorted(os.listdir(data_dir)):
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
    return examples


def find_examples(data_dir: str, frames_dir: str, frame_every: float) -> tuple[list[Example], bool]:
    """The frames of `data_dir`: Raindrop-layout pairs, or rainy images and videos.

    Returns:
        `(examples, paired)`.

    Raises:
        DistillError: no such folder, no usable file, or an unreadable video.
    """
    if not os.path.isdir(data_dir):
        raise DistillError(f"--data-dir {data_dir}: no such folder")
    if all(os.path.isdir(os.path.join(data_dir, sub)) for sub in ("data", "gt")):
        return _pairs(data_dir), True
    return _rainy_files(data_dir, frames_dir, frame_every), False


def split_validation(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded split; at least one of each when there are two or more examples and a fraction."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    order = np.random.default_rng(seed).permutation(len(examples))
    n_val = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    held = set(order[:n_val].tolist())
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [e for i, e in enumerate(examples) if i in held]


def read_frame(path: str) -> np.ndarray:
    """The image in `path`, cropped to multiples of 4 (DistillError naming an unreadable file)."""
    from tf_deraindrop.utils.images import ImageReadError, read_image

    try:
        image = read_image(path)
    except ImageReadError as err:
        raise DistillError(str(err)) from err
    h, w = image.shape[:2]
    # Multiples of 4, so that the 1/2 and 1/4 outputs line up with crops.
    return image[: h - h % 4, : w - w % 4]


class FrameStore:
    """Decoded frames (uint8) kept in memory up to a budget, read again beyond it.

    Args:
        budget_bytes: memory for the decoded frames.

    Example:
        >>> frames = FrameStore()
        >>> image = frames.get("footage/0001.png")  # doctest: +SKIP
    """

    def __init__(self, budget_bytes: int = 2 << 30):
        self.budget = int(budget_bytes)
        self.used = 0
        self._cache: dict[str, np.ndarray] = {}

    def get(self, path: str) -> np.ndarray:
        """The frame as float32 RGB in [0, 1], cropped to multiples of 4."""
        array = self._cache.get(path)
        if array is None:
            from tf_deraindrop.utils.images import to_uint8

            array = to_uint8(read_frame(path))
            if self.used + array.nbytes <= self.budget:
                self._cache[path] = array
                self.used += array.nbytes
        return array.astype(np.float32) / 255.0
