"""Images for calibration and verification: listing, reading, fitting to the model's size.

When a folder has too few images, `synthetic_images` makes smooth scenes
with drop-like discs, enough to check that an export computes what the Keras
generator computes.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from export.errors import ExportError

# tf_deraindrop is imported inside the functions, here and in the other
# modules `export.tflite` loads: `python -m export.tflite --help` and flag
# errors answer before Keras and TensorFlow load.


def list_images(directory: str, flag: str = "--calibration-dir") -> list[str]:
    """Image files directly in `directory`, sorted. Raises `ExportError` if none."""
    from tf_deraindrop.images import IMAGE_SUFFIXES

    if not os.path.isdir(directory):
        raise ExportError(f"{flag} {directory}: no such folder")
    try:
        names = sorted(os.listdir(directory))
    except OSError as err:
        raise ExportError(f"{flag} {directory}: cannot list the folder ({err})") from err
    paths = [
        os.path.join(directory, n)
        for n in names
        if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(directory, n))
    ]
    if not paths:
        raise ExportError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return paths


def read_images(paths: list[str], what: str) -> list[np.ndarray]:
    """Reads images, skipping unreadable ones with a warning; `ExportError` if none is readable."""
    from tf_deraindrop.images import ImageReadError, read_image

    images = []
    for path in paths:
        try:
            images.append(read_image(path))
        except ImageReadError as err:
            print(f"warning: skipping {err}", file=sys.stderr)
    if not images:
        raise ExportError(f"none of the {len(paths)} {what} images could be read")
    return images


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import tensorflow as tf

    out = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
    return np.clip(out.numpy(), 0.0, 1.0).astype(np.float32)


def fit_samples(
    images: list[np.ndarray], height: int, width: int, count: int, seed: int = 0
) -> list[np.ndarray]:
    """`count` float32 `(height, width, 3)` samples from `images`, cycling through them.

    The first sample of each image is the whole image resized to cover the
    size and centre-cropped (the frame as a model of that size sees it);
    later ones are random crops at a random scale between that and the
    native one (the tiles a smaller model sees on a large frame).
    """
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(count):
        image = images[k % len(images)]
        h, w = image.shape[:2]
        cover = max(height / h, width / w)
        scale = (
            cover
            if k < len(images)
            else math.exp(rng.uniform(math.log(cover), math.log(max(cover, 1.0))))
        )
        rh, rw = max(height, round(h * scale)), max(width, round(w * scale))
        resized = image if (rh, rw) == (h, w) else _resize(image, rh, rw)
        if k < len(images):
            y, x = (rh - height) // 2, (rw - width) // 2
        else:
            y, x = int(rng.integers(0, rh - height + 1)), int(rng.integers(0, rw - width + 1))
        samples.append(np.ascontiguousarray(resized[y : y + height, x : x + width]))
    return samples


def synthetic_images(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random scenes with bright blurred discs (drop-like), float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        image = np.zeros((height, width, 3), np.float32)
        for _ in range(4):  # low-frequency colour waves
            fy, fx = rng.uniform(0.5, 3.0, 2) * 2 * np.pi / np.array([height, width])
            phase = rng.uniform(0, 2 * np.pi)
            image += rng.uniform(0.05, 0.2, 3) * np.sin(fy * yy + fx * xx + phase)[..., None]
        image += rng.uniform(0.3, 0.6, 3)
        for _ in range(max(1, height * width // 400)):  # drops
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(1.5, max(2.0, min(height, width) / 8))
            disc = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            image += rng.uniform(0.1, 0.4) * disc[..., None]
        image += rng.normal(0, 0.01, image.shape).astype(np.float32)
        images.append(np.clip(image, 0.0, 1.0).astype(np.float32))
    return images
