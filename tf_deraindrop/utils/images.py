"""Reading images (upright, size-checked) and bringing them to float RGB in [0, 1].

Every tool reads photos through `open_image`/`read_image`, so that all of
them apply the EXIF orientation (a portrait phone photo is stored sideways
with a tag that says so) and refuse a decompression bomb (a small file that
declares an enormous image) with a message naming the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: The most pixels an image may declare (2**27, about 134 MP). The largest
#: photos cameras write pass (108 MP phones, 12000 x 9000; 102 MP medium
#: format); a 20000 x 10000 bomb does not. PIL warns at 89 MP and refuses
#: 179 MP by default; between its warning and this limit, the warning is
#: silenced here. At this limit the float32 image alone takes 1.6 GB.
MAX_IMAGE_PIXELS = 2**27

#: EXIF tag 274: how the stored pixels are turned (1: upright).
ORIENTATION_TAG = 0x0112


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file."""


class ImageTooLargeError(ImageReadError):
    """An image declares more than `MAX_IMAGE_PIXELS` pixels (a decompression bomb, say)."""


def _too_large(path: str, what: str) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{path}: {what}, more than the {MAX_IMAGE_PIXELS:,} pixels an image may have "
        "(a decompression bomb, or larger than any camera's photo: downscale it first)"
    )


@contextlib.contextmanager
def open_image(path: str | os.PathLike) -> Iterator[Image.Image]:
    """Opens an image with PIL (header only) after checking its declared size.

    Errors inside the `with` block (a truncated file found by `load()`, say)
    are turned into `ImageReadError` naming the file too.

    Raises:
        ImageReadError: missing file, not an image, truncated, or more than
            `MAX_IMAGE_PIXELS` pixels.

    Example:
        >>> with open_image("photo.jpg") as img:  # doctest: +SKIP
        ...     height, width = oriented_size(img)
    """
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _too_large(path, f"{width} x {height} = {width * height:,} pixels")
            yield img
    except ImageReadError:
        raise
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: no such file") from err
    except Image.DecompressionBombError as err:
        # PIL refuses before the size is known to us; its message has the count.
        count = re.search(r"(\d+) pixels", str(err))
        raise _too_large(path, f"{int(count[1]):,} pixels" if count else "too many pixels") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from err


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation of an open image, 1 (upright) to 8; 1 without a valid tag."""
    try:
        value = int(img.getexif().get(ORIENTATION_TAG, 1))
    except (TypeError, ValueError, OSError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """`(height, width)` of an open image once its EXIF orientation is applied."""
    width, height = img.size
    return (width, height) if exif_orientation(img) >= 5 else (height, width)


_TURNED: dict[tuple[str, int, int], bool] = {}


def is_turned(path: str | os.PathLike) -> bool:
    """True when a file's EXIF orientation is not upright (it must be read by `read_image`).

    Decoders that ignore EXIF (`tf.io.decode_image`) would give such a file
    sideways or mirrored. The answer is remembered per file (path, size and
    modification time), so the header checks of a dataset and the pipeline
    that follows open each header once.

    Raises:
        ImageReadError: as `open_image`.
    """
    path = os.fspath(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: no such file") from err
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _TURNED:
        with open_image(path) as img:
            _TURNED[key] = exif_orientation(img) != 1
    return _TURNED[key]


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
    """Reads an image file as float32 RGB `(H, W, 3)` in [0, 1], upright.

    The EXIF orientation is applied (as phone viewers do), so a portrait
    photo stored sideways comes out portrait.

    Raises:
        ImageReadError: the file is missing, not an image, truncated, or
            larger than `MAX_IMAGE_PIXELS`.
    """
    path = os.fspath(path)
    with open_image(path) as img:
        img.load()
        if exif_orientation(img) != 1:
            ImageOps.exif_transpose(img, in_place=True)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(img).astype(np.uint16 if img.mode != "I" else np.int32)
            if array.dtype == np.int32:
                array = np.clip(array, 0, 65535).astype(np.uint16)
        elif img.mode in ("L", "RGB", "RGBA"):
            array = np.asarray(img)
        else:
            array = np.asarray(img.convert("RGB"))
    return to_float_rgb(array)


class ImageWriteError(OSError):
    """An image could not be written; the message names the file and the reason."""

    def __str__(self) -> str:
        return str(self.strerror)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a float [0, 1] or uint8 RGB image atomically (temporary name, then rename).

    The format follows the suffix. On a full disk or any other write error
    the temporary file is removed and `path` is left as it was.

    Raises:
        ImageWriteError: naming `path` and the reason (`errno` kept).
    """
    from tf_deraindrop.utils.files import atomic_path

    path = os.fspath(path)
    array = image if image.dtype == np.uint8 else to_uint8(image)
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp)
    except OSError as err:
        raise ImageWriteError(
            err.errno, f"{path}: could not be written ({err.strerror or err})"
        ) from err
