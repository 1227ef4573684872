"""Rainy/clean pairs on disk: the Raindrop layout, finding, splitting and checking pairs.

The layout is the authors': `<split>/data/<k>_rain.png` with
`<split>/gt/<k>_clean.png` (png or jpg, any mix), matched by `k`, and an
optional `<split>/mask/<k>_mask.png` per pair. `scan_folder` reads one of
these folders and reports every file it cannot use; `find_pairs` (the
training pipeline) and `tf_deraindrop.data.prepare` (the dataset checker) both build
on it.

Every pair is checked from the image headers (sizes equal, crop fits, file
complete), so that a bad file gives an error naming it rather than a failure
deep inside TensorFlow; `skip_bad=True` turns each such error into a skipped
pair, one warning and a count.

Pure Python (PIL for the headers): importing this module does not load
TensorFlow.

Example:
    >>> pairs, sizes = check_pairs(find_pairs("Raindrop/train"), crop_size=224)
    >>> train, val = split_validation(pairs, 0.05, seed=0)
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import warnings
from collections.abc import Sequence

import numpy as np

from tf_deraindrop.utils.images import IMAGE_SUFFIXES

#: Sub-folder and name suffix of each role: `data/<k>_rain.*`, `gt/<k>_clean.*`, `mask/<k>_mask.*`.
LAYOUT = {"rainy": ("data", "_rain"), "clean": ("gt", "_clean"), "mask": ("mask", "_mask")}
#: Shards of `tf_deraindrop.data.records` (`train-00000-of-00004.tfrecord`).
TFRECORD_PATTERN = "*.tfrecord"

_LAYOUT_HINT = "expected the Raindrop layout: data/<k>_rain.png with gt/<k>_clean.png"


class DatasetError(ValueError):
    """A dataset problem (missing folder, unmatched pair, bad image); names the file."""


class DatasetWarning(UserWarning):
    """Bad pairs were skipped (`skip_bad=True`); the message gives the count."""


@dataclasses.dataclass(frozen=True)
class Pair:
    """One training example on disk.

    Args:
        rainy: path of the image with drops.
        clean: path of the image without drops.
        mask: path of the binary mask (drops white), or None to compute it.
        name: the pair's id `k` (used in logs and CSV files).
    """

    rainy: str
    clean: str
    mask: str | None
    name: str


# Finding pairs ---------------------------------------------------------------


def natural_key(k: str) -> list:
    """Sort key that orders `2` before `10` (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]


@dataclasses.dataclass
class FolderScan:
    """What `scan_folder` found in one folder of the layout.

    Attributes:
        found: pair key `k` -> the image files named `<k><suffix>.*`, sorted
            (more than one is a duplicate).
        not_images: files whose suffix is not an image format.
        misnamed: image files not named `<k><suffix>`.
    """

    found: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    not_images: list[str] = dataclasses.field(default_factory=list)
    misnamed: list[str] = dataclasses.field(default_factory=list)

    @property
    def image_count(self) -> int:
        return sum(len(paths) for paths in self.found.values()) + len(self.misnamed)


def scan_folder(folder: str | os.PathLike, role: str) -> FolderScan:
    """Reads one folder of the layout (`data/`, `gt/` or `mask/`).

    Hidden files and sub-folders are ignored.

    Args:
        folder: the folder (it must exist).
        role: `"rainy"`, `"clean"` or `"mask"` (the name suffix, see `LAYOUT`).

    Example:
        >>> scan_folder("Raindrop/train/data", "rainy").found["0"]  # doctest: +SKIP
        ['Raindrop/train/data/0_rain.png']
    """
    pattern = re.compile(rf"^(?P<k>.+){re.escape(LAYOUT[role][1])}$")
    scan = FolderScan()
    with os.scandir(folder) as entries:
        files = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())
    for name in files:
        path = os.path.join(os.fspath(folder), name)
        stem, suffix = os.path.splitext(name)
        if suffix.lower() not in IMAGE_SUFFIXES:
            scan.not_images.append(path)
            continue
        match = pattern.match(stem)
        if match is None:
            scan.misnamed.append(path)
        else:
            scan.found.setdefault(match.group("k"), []).append(path)
    return scan


def _report_skipped(problems: list[tuple[str, str]], total: int, what: str) -> None:
    shown = "\n".join(f"  {path}: {reason}" for path, reason in problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    warnings.warn(
        f"Skipped {len(problems)} of {total} {what}:\n{shown}{more}",
        DatasetWarning,
        stacklevel=3,
    )


def _pair_of(k: str, rainy: list[str], clean: list[str], masks: list[str], data_dir: str):
    """`(Pair, None)` for a usable key, else `(None, reason)`."""
    if len(rainy) > 1:
        return None, f"two rainy images for pair {k}: {', '.join(rainy)}"
    if not clean:
        return None, f"no clean partner gt/{k}_clean.png (or .jpg) in {data_dir}"
    if len(clean) > 1:
        return None, f"two clean partners: {', '.join(clean)}"
    if len(masks) > 1:
        return None, f"two masks: {', '.join(masks)}"
    return Pair(rainy[0], clean[0], masks[0] if masks else None, k), None


def find_pairs(
    data_dir: str | os.PathLike,
    skip_bad: bool = False,
    problems: list[tuple[str, str]] | None = None,
) -> list[Pair]:
    """Lists the pairs of a directory in the Raindrop layout, sorted by `k`.

    Args:
        data_dir: folder holding `data/` (`<k>_rain.*`), `gt/` (`<k>_clean.*`)
            and optionally `mask/` (`<k>_mask.*`).
        skip_bad: skip a rainy image without its clean partner (or with two
            candidates) with one warning and a count, instead of raising.
        problems: if given, `(path, reason)` of every skipped file is appended.

    Returns:
        The pairs, `mask` set where `mask/<k>_mask.*` exists.

    Raises:
        DatasetError: a folder is missing, there are no pairs, or (without
            `skip_bad`) a rainy image has no clean partner.

    Example:
        >>> pairs = find_pairs("Raindrop/test_a")  # doctest: +SKIP
        >>> pairs[0].rainy, pairs[0].clean  # doctest: +SKIP
        ('Raindrop/test_a/data/0_rain.png', 'Raindrop/test_a/gt/0_clean.png')
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DatasetError(f"{data_dir}: no such folder ({_LAYOUT_HINT}).")
    folders = {role: os.path.join(data_dir, sub) for role, (sub, _) in LAYOUT.items()}
    for role in ("rainy", "clean"):
        if not os.path.isdir(folders[role]):
            raise DatasetError(f"{folders[role]}: missing folder ({_LAYOUT_HINT}).")
    rainy = scan_folder(folders["rainy"], "rainy").found
    clean = scan_folder(folders["clean"], "clean").found
    masks = scan_folder(folders["mask"], "mask").found if os.path.isdir(folders["mask"]) else {}

    pairs: list[Pair] = []
    bad: list[tuple[str, str]] = []
    for k in sorted(rainy, key=natural_key):
        pair, reason = _pair_of(k, rainy[k], clean.get(k, []), masks.get(k, []), data_dir)
        if pair is not None:
            pairs.append(pair)
        elif not skip_bad:
            raise DatasetError(f"{rainy[k][0]}: {reason}.")
        else:
            bad.append((rainy[k][0], reason))
    if bad:
        if problems is not None:
            problems.extend(bad)
        _report_skipped(bad, len(rainy), f"rainy images in {data_dir}")
    if not pairs:
        found = f"{len(rainy)} rainy and {len(clean)} clean images"
        raise DatasetError(f"{data_dir}: no pairs found ({found}; {_LAYOUT_HINT}).")
    return pairs


def split_validation(
    pairs: Sequence[Pair], fraction: float, seed: int | None = 0
) -> tuple[list[Pair], list[Pair]]:
    """Holds out a random `fraction` of the pairs for validation.

    Args:
        pairs: all pairs.
        fraction: share held out, in [0, 1); at least one pair when > 0.
        seed: the same seed gives the same split.

    Returns:
        `(train_pairs, val_pairs)`, each in the original order.

    Example:
        >>> train, val = split_validation(find_pairs("train"), 0.05, seed=0)  # doctest: +SKIP
    """
    pairs = list(pairs)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"Validation fraction must be in [0, 1), got {fraction}.")
    n_val = 0 if fraction == 0 else max(1, int(round(fraction * len(pairs))))
    if n_val >= len(pairs):
        raise ValueError(
            f"Holding out {fraction:g} of {len(pairs)} pairs leaves none for training."
        )
    held = set(np.random.default_rng(seed).permutation(len(pairs))[:n_val].tolist())
    train = [p for i, p in enumerate(pairs) if i not in held]
    val = [p for i, p in enumerate(pairs) if i in held]
    return train, val


def is_tfrecord_dir(path: str | os.PathLike) -> bool:
    """True for a folder of TFRecord shards (and no Raindrop-layout `data/` folder)."""
    path = os.fspath(path)
    if os.path.isdir(os.path.join(path, "data")):
        return False
    return bool(glob.glob(os.path.join(path, TFRECORD_PATTERN)))


# Checking files up front ----------------------------------------------------


def image_size(path: str) -> tuple[int, int]:
    """`(height, width)` of an image from its header, after checking the file is complete.

    PNG chunks are read and their checksums verified without decoding the
    pixels; a JPEG must end with its end-of-image marker (or else decode
    completely). Both are cheap next to decoding.

    The size is the upright one (EXIF orientation applied, as `read_image`
    reads the file).

    Raises:
        DatasetError: the file is missing, not an image, truncated, or over
            `images.MAX_IMAGE_PIXELS` (a decompression bomb).
    """
    from PIL import UnidentifiedImageError

    from tf_deraindrop.utils.images import ImageReadError, open_image, oriented_size

    try:
        with open_image(path) as img:
            height, width = oriented_size(img)
            fmt = img.format
    except ImageReadError as err:
        raise DatasetError(str(err)) from err
    try:
        if fmt == "PNG":
            with open_image(path) as img:
                img.verify()
        elif fmt == "JPEG":
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 4096))
                tail = f.read()
            if b"\xff\xd9" not in tail:
                # No end marker near the end: trailing data or truncation; decode to tell.
                with open_image(path) as img:
                    img.load()
    except ImageReadError as err:
        raise DatasetError(str(err)) from err
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable image ({err})") from err
    return height, width


def _check_pair(pair: Pair, crop_size: int | None) -> tuple[int, int]:
    size = image_size(pair.rainy)
    clean_size = image_size(pair.clean)
    if clean_size != size:
        raise DatasetError(
            f"{pair.rainy} ({size[1]} x {size[0]}) and {pair.clean} "
            f"({clean_size[1]} x {clean_size[0]}) differ in size."
        )
    if pair.mask is not None:
        mask_size = image_size(pair.mask)
        if mask_size != size:
            raise DatasetError(
                f"{pair.mask} ({mask_size[1]} x {mask_size[0]}) is not the size of its "
                f"pair {pair.rainy} ({size[1]} x {size[0]})."
            )
    if crop_size is not None and (size[0] < crop_size or size[1] < crop_size):
        raise DatasetError(
            f"{pair.rainy} ({size[1]} x {size[0]}) is smaller than the crop "
            f"{crop_size} x {crop_size}; use a smaller --crop-size or drop the pair."
        )
    if crop_size is None and (size[0] < 4 or size[1] < 4):
        raise DatasetError(f"{pair.rainy} ({size[1]} x {size[0]}) is smaller than 4 x 4.")
    return size


def check_pairs(
    pairs: Sequence[Pair],
    crop_size: int | None = None,
    skip_bad: bool = False,
    problems: list[tuple[str, str]] | None = None,
) -> tuple[list[Pair], list[tuple[int, int]]]:
    """Checks every pair from its headers: readable, complete, equal sizes, crop fits.

    Args:
        pairs: the pairs to check.
        crop_size: the crop that must fit in every image, or None.
        skip_bad: drop a bad pair with one warning and a count instead of raising.
        problems: if given, `(path, reason)` of every skipped pair is appended.

    Returns:
        `(good_pairs, sizes)`, `sizes[i]` the `(height, width)` of `good_pairs[i]`.

    Raises:
        DatasetError: naming the file, for the first bad pair (without `skip_bad`),
            or when no good pair is left.

    Example:
        >>> pairs, sizes = check_pairs(find_pairs("Raindrop/train"), 224)  # doctest: +SKIP
    """
    good, sizes, bad = [], [], []
    for pair in pairs:
        try:
            sizes.append(_check_pair(pair, crop_size))
            good.append(pair)
        except DatasetError as err:
            if not skip_bad:
                raise
            bad.append((pair.rainy, str(err)))
    if bad:
        if problems is not None:
            problems.extend(bad)
        _report_skipped(bad, len(pairs), "pairs")
    if not good:
        raise DatasetError(f"No usable pair among {len(pairs)} (all {len(bad)} were bad).")
    return good, sizes
