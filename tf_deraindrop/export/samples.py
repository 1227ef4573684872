"""Images for calibration, verification and fine-tuning: listing, reading, fitting, cropping.

`gather_images` reads what an export needs from its folders (`ExportImages`).
When a folder has too few images, `synthetic_images` makes smooth scenes
with drop-like discs, enough to check that an export computes what the Keras
generator computes. `random_crops` cuts fine-tuning batches (`tf_deraindrop.export.int8.qat`).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from tf_deraindrop.export.errors import ExportError

# tf_deraindrop is imported inside the functions, here and in the other
# modules `tf_deraindrop.export.tflite` loads: `deraindrop export --help` and flag
# errors answer before Keras and TensorFlow load.


def list_images(directory: str, flag: str = "--calibration-dir") -> list[str]:
    """Image files directly in `directory`, sorted. Raises `ExportError` if none."""
    from tf_deraindrop.utils.images import IMAGE_SUFFIXES

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
    from tf_deraindrop.utils.images import ImageReadError, read_image

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


@dataclass
class ExportImages:
    """The images an export calibrates, verifies and fine-tunes on, and what to say about them.

    Attributes:
        height, width: the export size.
        calibration_count, verify_count: how many samples of that size
            calibration and verification take.
        calibration, held_out, fine_tuning: the images, as read.
        summary: the report's calibration line.
        verify_source: where the verification images come from.
        notes: more lines for the report.
    """

    height: int
    width: int
    calibration_count: int
    verify_count: int
    calibration: list[np.ndarray] = field(default_factory=list)
    held_out: list[np.ndarray] = field(default_factory=list)
    fine_tuning: list[np.ndarray] = field(default_factory=list)
    summary: str = ""
    verify_source: str = ""
    notes: list[str] = field(default_factory=list)

    def calibration_samples(self) -> list[np.ndarray]:
        """The calibration images fitted to the export size (`fit_samples`)."""
        return fit_samples(self.calibration, self.height, self.width, self.calibration_count)

    def verification_samples(self) -> list[np.ndarray]:
        """The held-out images fitted to the export size (other crops than calibration's)."""
        return fit_samples(self.held_out, self.height, self.width, self.verify_count, seed=1)


def gather_images(
    quantize, calibration_dir, verify_model, verify_dir, height, width, samples, verify_samples
) -> ExportImages:
    """Reads the calibration and verification images (a bad folder fails before slow work).

    int8 calibrates on the images of `calibration_dir` and holds one in five
    out for verification; the other modes verify on all of them. Without
    either folder, verification runs on synthetic scenes.
    """
    found = ExportImages(height, width, samples, verify_samples)
    if calibration_dir:
        images = read_images(list_images(calibration_dir), "calibration")
        if quantize == "int8":
            n_out = len(images) // 5 or (1 if len(images) > 1 else 0)
            found.calibration = images[: len(images) - n_out]
            found.held_out = images[len(images) - n_out :]
            found.summary = (
                f"Calibration: {samples} samples of {height}x{width} from "
                f"{len(found.calibration)} of the {len(images)} readable images in "
                f"{calibration_dir} ({n_out} held out for verification)"
            )
        else:
            found.held_out = images
    if not verify_model:
        return found
    if verify_dir:
        found.held_out = read_images(list_images(verify_dir, "--verify-dir"), "verification")
        found.verify_source = f"{len(found.held_out)} images from {verify_dir}"
    elif found.held_out:
        found.verify_source = f"{len(found.held_out)} held-out images from {calibration_dir}"
    else:
        found.held_out = synthetic_images(verify_samples, height, width)
        found.verify_source = "synthetic scenes"
        if quantize == "int8":
            found.notes.append(
                "note: the calibration folder has one image, so verification ran on "
                "synthetic scenes; add images for a held-out check"
            )
    return found


def at_export_scale(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The image resized to just cover the export size, as the model will see whole frames.

    Activation statistics depend on the scale of the scene: crops of a
    photo at another scale than the calibration's would train the ranges
    and weights for other images than the model will get.
    """
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    if abs(scale - 1) < 1e-6:
        return np.asarray(image, np.float32)
    return _resize(image, max(height, round(h * scale)), max(width, round(w * scale)))


def random_crops(images: list[np.ndarray], crop: int, batch: int, rng) -> np.ndarray:
    """`batch` random `crop x crop` crops (upscaled first where an image is smaller), flipped."""
    out = []
    for _ in range(batch):
        image = images[int(rng.integers(len(images)))]
        h, w = image.shape[:2]
        if min(h, w) < crop:
            scale = crop / min(h, w)
            image = _resize(image, max(crop, round(h * scale)), max(crop, round(w * scale)))
            h, w = image.shape[:2]
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        piece = image[y : y + crop, x : x + crop]
        out.append(piece[:, ::-1] if rng.random() < 0.5 else piece)
    return np.ascontiguousarray(np.stack(out), np.float32)
