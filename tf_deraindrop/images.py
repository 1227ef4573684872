"""Reading images and bringing them to float RGB in [0, 1]."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file."""


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """Any common image array as float32 RGB `(H, W, 3)` in [0, 1].

    Accepts grayscale `(H, W)` or `(H, W, 1)`, RGB, and RGBA (alpha dropped),
    as uint8, uint16 (16-bit PNG/TIFF), bool, or float already in [0, 1].

    Raises:
        ValueError: for another shape or dtype.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(
            "Expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got {image.shape}."
        )
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] == 4:
        image = image[..., :3]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(image.astype(np.float32), 0.0, 1.0)
    raise ValueError(
        f"Unsupported image dtype {image.dtype}; use uint8, uint16 or float in [0, 1]."
    )


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8, clipping and rounding."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as float32 RGB `(H, W, 3)` in [0, 1].

    Raises:
        ImageReadError: the file is missing, not an image, or truncated.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img).astype(np.uint16 if img.mode != "I" else np.int32)
                if array.dtype == np.int32:
                    array = np.clip(array, 0, 65535).astype(np.uint16)
            elif img.mode in ("L", "RGB", "RGBA"):
                array = np.asarray(img)
            else:
                array = np.asarray(img.convert("RGB"))
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from err
    return to_float_rgb(array)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a float [0, 1] or uint8 RGB image atomically (temporary name, then rename)."""
    path = os.fspath(path)
    array = image if image.dtype == np.uint8 else to_uint8(image)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    base, suffix = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(directory, f".{base}.partial{suffix}")
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)
