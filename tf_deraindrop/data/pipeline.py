"""The training and validation input pipeline: rainy/clean pairs and their masks.

Sources:

* a directory in the Raindrop layout: `data/<k>_rain.png` with
  `gt/<k>_clean.png` (png or jpg, any mix), matched by `k`, and an optional
  `mask/<k>_mask.png` per pair;
* a directory of TFRecord shards written by `tf_deraindrop.data.records`;
* a list of `Pair`.

Every pair is checked up front from the image headers (sizes equal, crop
fits, file complete), so that a bad file gives an error naming it rather
than a failure deep inside TensorFlow; `skip_bad=True` turns each such error
into a skipped pair, one warning and a count.

The mask `M` is read from `mask/` where a pair has one; otherwise it is
computed from the pair by `tf_deraindrop.masks.compute_mask` (the one
implementation of the rule) on the cropped window plus a margin wide enough
for its morphology, which gives exactly the mask of the full image, cropped.

Example:
    >>> ds = make_dataset("Raindrop/train", crop_size=224, batch_size=4, seed=0)
    >>> rainy, clean, mask = next(iter(ds))  # (4, 224, 224, 3/3/1) float32 in [0, 1]
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from tf_deraindrop.images import IMAGE_SUFFIXES

#: Formats `tf.io.decode_image` reads natively; anything else is decoded by PIL.
TF_DECODABLE = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: Shards of `tf_deraindrop.data.records` (`train-00000-of-00004.tfrecord`).
TFRECORD_PATTERN = "*.tfrecord"
DEFAULT_MASK_THRESHOLD = 30.0 / 255.0


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

_RAIN = re.compile(r"^(?P<k>.+)_rain$")
_CLEAN = re.compile(r"^(?P<k>.+)_clean$")
_MASK = re.compile(r"^(?P<k>.+)_mask$")


def _natural_key(k: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]


def _index_folder(folder: str, pattern: re.Pattern) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(entry)
        if entry.startswith(".") or suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = pattern.match(stem)
        if match:
            found.setdefault(match.group("k"), []).append(os.path.join(folder, entry))
    return found


def _report_skipped(problems: list[tuple[str, str]], total: int, what: str) -> None:
    shown = "\n".join(f"  {path}: {reason}" for path, reason in problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    warnings.warn(
        f"Skipped {len(problems)} of {total} {what}:\n{shown}{more}",
        DatasetWarning,
        stacklevel=3,
    )


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
    layout = "expected the Raindrop layout: data/<k>_rain.png with gt/<k>_clean.png"
    if not os.path.isdir(data_dir):
        raise DatasetError(f"{data_dir}: no such folder ({layout}).")
    for sub in ("data", "gt"):
        if not os.path.isdir(os.path.join(data_dir, sub)):
            raise DatasetError(f"{os.path.join(data_dir, sub)}: missing folder ({layout}).")
    rainy = _index_folder(os.path.join(data_dir, "data"), _RAIN)
    clean = _index_folder(os.path.join(data_dir, "gt"), _CLEAN)
    mask_dir = os.path.join(data_dir, "mask")
    masks = _index_folder(mask_dir, _MASK) if os.path.isdir(mask_dir) else {}

    pairs: list[Pair] = []
    bad: list[tuple[str, str]] = []
    for k in sorted(rainy, key=_natural_key):
        candidates = clean.get(k, [])
        if len(rainy[k]) > 1:
            reason = f"two rainy images for pair {k}: {', '.join(rainy[k])}"
        elif not candidates:
            reason = f"no clean partner gt/{k}_clean.png (or .jpg) in {data_dir}"
        elif len(candidates) > 1:
            reason = f"two clean partners: {', '.join(candidates)}"
        elif len(masks.get(k, [])) > 1:
            reason = f"two masks: {', '.join(masks[k])}"
        else:
            mask = masks[k][0] if k in masks else None
            pairs.append(Pair(rainy[k][0], candidates[0], mask, k))
            continue
        if not skip_bad:
            raise DatasetError(f"{rainy[k][0]}: {reason}.")
        bad.append((rainy[k][0], reason))
    if bad:
        if problems is not None:
            problems.extend(bad)
        _report_skipped(bad, len(rainy), f"rainy images in {data_dir}")
    if not pairs:
        found = f"{len(rainy)} rainy and {len(clean)} clean images"
        raise DatasetError(f"{data_dir}: no pairs found ({found}; {layout}).")
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


# Checking files up front ----------------------------------------------------


def image_size(path: str) -> tuple[int, int]:
    """`(height, width)` of an image from its header, after checking the file is complete.

    PNG chunks are read and their checksums verified without decoding the
    pixels; a JPEG must end with its end-of-image marker (or else decode
    completely). Both are cheap next to decoding.

    Raises:
        DatasetError: the file is missing, not an image, or truncated.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
            fmt = img.format
        if fmt == "PNG":
            with Image.open(path) as img:
                img.verify()
        elif fmt == "JPEG":
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 4096))
                tail = f.read()
            if b"\xff\xd9" not in tail:
                # No end marker near the end: trailing data or truncation; decode to tell.
                with Image.open(path) as img:
                    img.load()
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


# The tf.data pipeline ---------------------------------------------------------


def is_tfrecord_dir(path: str | os.PathLike) -> bool:
    """True for a folder of TFRecord shards (and no Raindrop-layout `data/` folder)."""
    import glob

    path = os.fspath(path)
    if os.path.isdir(os.path.join(path, "data")):
        return False
    return bool(glob.glob(os.path.join(path, TFRECORD_PATTERN)))


def _mask_margin(mask_options: dict) -> int:
    # Closing then opening with squares of side c and o moves information by at
    # most 2 * (c // 2) + 2 * (o // 2) pixels; beyond that the crop's mask is
    # exactly the full image's.
    margin = 0
    for key in ("close_size", "open_size"):
        size = int(mask_options.get(key) or 0)
        if size > 1:
            margin += 2 * (size // 2)
    return margin + (2 if margin else 0)


def _make_mask_fn(mask_threshold: float, mask_options: dict):
    from tf_deraindrop.masks import compute_mask

    def mask_fn(rainy, clean):
        mask = compute_mask(rainy, clean, threshold=mask_threshold, **mask_options)
        return np.asarray(mask, dtype=np.uint8).reshape(mask.shape[0], mask.shape[1], 1)

    return mask_fn


def _pil_decode(channels: int):
    from tf_deraindrop.images import read_image, to_uint8

    def decode(path):
        image = to_uint8(read_image(path.decode()))
        return image[..., :1] if channels == 1 else image

    return decode


class _Pipeline:
    """The per-example graph functions, shared by the pair and TFRecord sources."""

    def __init__(self, crop_size, training, seed, mask_threshold, mask_options, native):
        import tensorflow as tf

        self.tf = tf
        self.crop = crop_size
        self.training = training
        self.seed = seed
        self.margin = _mask_margin(mask_options)
        self.mask_fn = _make_mask_fn(mask_threshold, mask_options)
        self.native = native

    # Decoding: uint8 images, a (0, 0, 1) placeholder where no mask is stored.

    def decode_bytes(self, contents, channels):
        tf = self.tf
        # decode_image's JPEG path uses the fast integer DCT, up to 15 levels
        # off the PIL decode that evaluation and the mask tools see; the
        # accurate DCT gives PIL's pixels exactly.
        image = tf.cond(
            tf.io.is_jpeg(contents),
            lambda: tf.io.decode_jpeg(contents, channels=channels, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(contents, channels=channels, expand_animations=False),
        )
        return tf.ensure_shape(image, [None, None, channels])

    def decode_file(self, path, channels):
        tf = self.tf
        if self.native:
            return self.decode_bytes(tf.io.read_file(path), channels)
        image = tf.numpy_function(_pil_decode(channels), [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, channels])

    def binarize(self, mask):
        tf = self.tf
        return tf.cast(mask > 127, tf.uint8)

    def load_pair(self, rainy_path, clean_path, mask_path):
        tf = self.tf
        rainy = self.decode_file(rainy_path, 3)
        clean = self.decode_file(clean_path, 3)
        mask = tf.cond(
            tf.strings.length(mask_path) > 0,
            lambda: self.binarize(self.decode_file(mask_path, 1)),
            lambda: tf.zeros([0, 0, 1], tf.uint8),
        )
        return rainy, clean, mask

    # Cropping: one window for the three images; the mask is computed on the
    # window plus a margin where it is not stored.

    def crop_example(self, index, rainy, clean, mask):
        tf = self.tf
        shape = tf.shape(rainy)
        h, w = shape[0], shape[1]
        if self.crop is None:
            ch, cw = h - h % 4, w - w % 4
            oy = ox = tf.constant(0, tf.int32)
            flip = tf.constant(False)
        else:
            ch = cw = tf.constant(self.crop, tf.int32)
            if self.training:
                seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(index, tf.int64)])
                u = tf.random.stateless_uniform([3], seed=seed)
                oy = tf.minimum(tf.cast(u[0] * tf.cast(h - ch + 1, tf.float32), tf.int32), h - ch)
                ox = tf.minimum(tf.cast(u[1] * tf.cast(w - cw + 1, tf.float32), tf.int32), w - cw)
                flip = u[2] < 0.5
            else:
                oy, ox = (h - ch) // 2, (w - cw) // 2
                flip = tf.constant(False)

        def stored_mask():
            return mask[oy : oy + ch, ox : ox + cw]

        def computed_mask():
            y0 = tf.maximum(oy - self.margin, 0)
            x0 = tf.maximum(ox - self.margin, 0)
            y1 = tf.minimum(oy + ch + self.margin, h)
            x1 = tf.minimum(ox + cw + self.margin, w)
            window = tf.numpy_function(
                self.mask_fn,
                [rainy[y0:y1, x0:x1], clean[y0:y1, x0:x1]],
                tf.uint8,
                stateful=False,
            )
            window = tf.ensure_shape(window, [None, None, 1])
            return window[oy - y0 : oy - y0 + ch, ox - x0 : ox - x0 + cw]

        has_mask = tf.size(mask) > 0
        mask = tf.cond(has_mask, stored_mask, computed_mask)
        stacked = tf.concat(
            [rainy[oy : oy + ch, ox : ox + cw], clean[oy : oy + ch, ox : ox + cw], mask], axis=-1
        )
        stacked = tf.cond(flip, lambda: tf.reverse(stacked, axis=[1]), lambda: stacked)
        stacked = tf.cast(stacked, tf.float32)
        rainy_c = stacked[..., 0:3] / 255.0
        clean_c = stacked[..., 3:6] / 255.0
        mask_c = stacked[..., 6:7]
        static = [self.crop, self.crop] if self.crop is not None else [None, None]
        return (
            tf.ensure_shape(rainy_c, static + [3]),
            tf.ensure_shape(clean_c, static + [3]),
            tf.ensure_shape(mask_c, static + [1]),
        )


def _pairs_source(source, crop_size, skip_bad, problems):
    if isinstance(source, (str, os.PathLike)):
        pairs = find_pairs(source, skip_bad=skip_bad, problems=problems)
    else:
        pairs = list(source)
        if not pairs:
            raise DatasetError("No pairs given (an empty list).")
        if not all(isinstance(p, Pair) for p in pairs):
            raise TypeError("make_dataset takes a directory or a list of data.Pair.")
    return check_pairs(pairs, crop_size=crop_size, skip_bad=skip_bad, problems=problems)


def make_dataset(
    source: str | os.PathLike | Sequence[Pair],
    *,
    crop_size: int | None = 224,
    batch_size: int = 1,
    training: bool = True,
    mask_threshold: float = DEFAULT_MASK_THRESHOLD,
    mask_options: dict | None = None,
    seed: int | None = None,
    skip_bad: bool = False,
    shuffle_buffer: int | None = None,
    cache: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    problems: list[tuple[str, str]] | None = None,
    skip: int = 0,
):
    """A `tf.data.Dataset` of `(rainy, clean, mask)` batches for training or validation.

    Args:
        source: a Raindrop-layout directory, a directory of TFRecord shards
            (`tf_deraindrop.data.records`), or a list of `Pair`.
        crop_size: side of the square crops. With `training=False` it may be
            None: whole images cropped to multiples of 4 (then `batch_size`
            above 1 needs images of one size).
        batch_size: examples per batch (per replica when you shard).
        training: True: repeat forever, shuffle, identical random crop and
            horizontal flip of the three images, `drop_remainder`. False: one
            pass in order, centre crop, no flip; the last batch may be smaller.
        mask_threshold: threshold of `masks.compute_mask` for pairs without a
            stored mask (spec section 5; 30/255 by default). TFRecords always
            hold their mask, fixed when they were written.
        mask_options: further keyword arguments of `masks.compute_mask`
            (`reduce`, `close_size`, `open_size`).
        seed: fixes the shuffle order and the crops; None draws one.
        skip_bad: skip bad pairs with one warning and a count instead of raising.
        shuffle_buffer: examples in the shuffle buffer; default all pairs (file
            names are shuffled before decoding), 64 decoded pairs with
            `cache=True`, 256 records for TFRecords.
        cache: keep the decoded images in memory after the first pass
            (about 7 bytes per pixel per pair: 2.4 MB at 720 x 480).
        num_shards, shard_index: read only every `num_shards`-th pair (or
            shard file), for one input pipeline of several
            (`tf.distribute.InputContext`).
        problems: if given, `(path, reason)` of every skipped pair is appended.
        skip: batches to leave out at the start (training), for a resumed run:
            dropped before decoding, and the crops that follow are the ones an
            uninterrupted run with the same seed would see. Prefer it to
            `Dataset.skip`, which decodes every skipped pair.

    Returns:
        Dataset of `(rainy, clean, mask)`: float32 `(B, crop, crop, 3)`,
        `(B, crop, crop, 3)` in [0, 1] and `(B, crop, crop, 1)` in {0, 1}.

    Raises:
        DatasetError: missing folder, no pairs, unmatched or unreadable file,
            sizes that differ, a crop larger than an image (each naming the
            file), unless `skip_bad`.

    Example:
        >>> train = make_dataset("Raindrop/train", batch_size=4, seed=0)  # doctest: +SKIP
        >>> val = make_dataset("Raindrop/test_a", training=False)  # doctest: +SKIP
    """
    import tensorflow as tf

    if crop_size is None and training:
        raise ValueError("Training needs a crop_size (224 in the paper).")
    if crop_size is not None and (crop_size < 4 or crop_size % 4):
        raise ValueError(f"crop_size must be a positive multiple of 4, got {crop_size}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if skip and not training:
        raise ValueError("skip is for resuming training; validation has no skip.")
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}.")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} is not in [0, {num_shards}).")
    mask_options = dict(mask_options or {})
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))

    if isinstance(source, (str, os.PathLike)) and is_tfrecord_dir(source):
        return _records_dataset(
            os.fspath(source),
            crop_size=crop_size,
            batch_size=batch_size,
            training=training,
            mask_threshold=mask_threshold,
            mask_options=mask_options,
            seed=seed,
            skip_bad=skip_bad,
            shuffle_buffer=shuffle_buffer,
            cache=cache,
            num_shards=num_shards,
            shard_index=shard_index,
            skip=skip,
        )

    pairs, sizes = _pairs_source(source, crop_size, skip_bad, problems)
    if crop_size is None and batch_size > 1 and len({(h - h % 4, w - w % 4) for h, w in sizes}) > 1:
        raise DatasetError(
            "Whole images of different sizes cannot be batched: use batch_size=1 or a crop_size."
        )
    pairs = pairs[shard_index::num_shards]
    if not pairs:
        raise DatasetError(f"Shard {shard_index} of {num_shards} holds no pair.")
    native = all(
        os.path.splitext(p)[1].lower() in TF_DECODABLE
        for pair in pairs
        for p in (pair.rainy, pair.clean, pair.mask)
        if p is not None
    )
    pipe = _Pipeline(crop_size, training, seed, mask_threshold, mask_options, native)
    paths = tf.data.Dataset.from_tensor_slices(
        (
            [p.rainy for p in pairs],
            [p.clean for p in pairs],
            [p.mask or "" for p in pairs],
        )
    )
    return _finish(
        paths,
        pipe,
        n=len(pairs),
        training=training,
        batch_size=batch_size,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        cache=cache,
        skip_bad=skip_bad,
        skip=skip,
    )


def _finish(paths, pipe, *, n, training, batch_size, seed, shuffle_buffer, cache, skip_bad, skip):
    """Decode, shuffle, repeat, crop, batch, prefetch in the order that fits `cache`."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE

    def crop(i, example):
        return pipe.crop_example(i, *example)

    def load_and_crop(i, paths):
        return pipe.crop_example(i, *pipe.load_pair(*paths))

    if not training:
        ds = paths.enumerate().map(load_and_crop, num_parallel_calls=autotune)
        if cache:
            ds = ds.cache()
    elif cache:
        ds = paths.map(pipe.load_pair, num_parallel_calls=autotune).cache()
        ds = ds.shuffle(shuffle_buffer or min(n, 64), seed=seed, reshuffle_each_iteration=True)
        ds = ds.repeat().enumerate().skip(skip * batch_size)
        ds = ds.map(crop, num_parallel_calls=autotune)
    else:
        ds = paths.shuffle(shuffle_buffer or n, seed=seed, reshuffle_each_iteration=True)
        # Skipped examples are dropped as file names, before anything is decoded.
        ds = ds.repeat().enumerate().skip(skip * batch_size)
        ds = ds.map(load_and_crop, num_parallel_calls=autotune)
    if skip_bad:
        # Whatever the header checks could not see (corrupt pixel data) drops
        # the pair with a logged warning instead of stopping the run.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=autotune)
    return ds.prefetch(autotune)


def _records_dataset(
    directory,
    *,
    crop_size,
    batch_size,
    training,
    mask_threshold,
    mask_options,
    seed,
    skip_bad,
    shuffle_buffer,
    cache,
    num_shards,
    shard_index,
    skip,
):
    """The pipeline on TFRecord shards of `tf_deraindrop.data.records` (masks stored in them)."""
    import tensorflow as tf

    from tf_deraindrop.data import records

    try:
        files = records.find_tfrecords(directory)
    except FileNotFoundError as err:
        raise DatasetError(str(err)) from err
    if all(os.path.getsize(f) == 0 for f in files):
        # Repeating an empty dataset would wait forever for a first batch.
        raise DatasetError(f"{directory}: the TFRecord files hold no examples.")
    autotune = tf.data.AUTOTUNE
    pipe = _Pipeline(crop_size, training, seed, mask_threshold, mask_options, native=True)
    ds = tf.data.Dataset.from_tensor_slices(files)
    shard_records = num_shards > 1 and len(files) < num_shards
    if num_shards > 1 and not shard_records:
        ds = ds.shard(num_shards, shard_index)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        num_parallel_calls=autotune,
        deterministic=True,
    )
    if shard_records:
        ds = ds.shard(num_shards, shard_index)

    # The schema stores each example's size: bad sizes are dropped before any
    # PNG is decoded (records written without it read as 0 x 0, unknown).
    size_features = {
        "height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "name": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }

    def size_fits(serialized):
        header = tf.io.parse_single_example(serialized, size_features)
        smallest = tf.minimum(header["height"], header["width"])
        ok = tf.logical_or(
            tf.equal(smallest, 0), smallest >= (crop_size if crop_size is not None else 4)
        )
        tf.cond(
            ok,
            tf.no_op,
            lambda: tf.print(
                "warning: skipped TFRecord example",
                header["name"],
                "of",
                header["width"],
                "x",
                header["height"],
                "(smaller than the crop)",
                output_stream=sys.stderr,
            ),
        )
        return ok

    def parse(serialized):
        example = records.parse_example(serialized)
        rainy, clean, mask = example["rainy"], example["clean"], example["mask"]
        shape = tf.shape(rainy)
        ok = tf.logical_and(
            tf.reduce_all(tf.equal(tf.shape(clean), shape)),
            tf.reduce_all(tf.equal(tf.shape(mask)[:2], shape[:2])),
        )
        if crop_size is not None:
            ok = tf.logical_and(ok, tf.reduce_min(shape[:2]) >= crop_size)
        # The sizes are only known once a record is read: the error is raised
        # inside tf.data, but its message names the example and the folder.
        crop = "whole images" if crop_size is None else f"the crop {crop_size} x {crop_size}"
        message = tf.strings.join(
            [
                "TFRecord example ",
                example["name"],
                " (",
                tf.strings.as_string(shape[1]),
                " x ",
                tf.strings.as_string(shape[0]),
                f") in {directory}: its images differ in size or {crop} does not fit",
            ]
        )
        assertion = tf.debugging.Assert(ok, [message])
        with tf.control_dependencies([assertion]):
            return tf.identity(rainy), clean, pipe.binarize(mask)

    if skip_bad:
        ds = ds.filter(size_fits)
    if cache:
        # Decoded examples in memory; the shuffle buffer then holds decoded images.
        ds = ds.map(parse, num_parallel_calls=autotune).cache()
    if training:
        ds = ds.shuffle(shuffle_buffer or 256, seed=seed, reshuffle_each_iteration=True)
        ds = ds.repeat()
    ds = ds.enumerate()
    if skip:
        ds = ds.skip(skip * batch_size)
    if cache:
        ds = ds.map(lambda i, ex: pipe.crop_example(i, *ex), num_parallel_calls=autotune)
    else:
        ds = ds.map(
            lambda i, serialized: pipe.crop_example(i, *parse(serialized)),
            num_parallel_calls=autotune,
        )
    if skip_bad:
        # Corrupt records or pixel data drop the example with a logged warning.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=autotune)
    return ds.prefetch(autotune)
