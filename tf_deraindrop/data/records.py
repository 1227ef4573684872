"""Sharded TFRecords of rainy/clean/mask triples, read by the training pipeline.

Schema of one `tf.train.Example`:

| key | type | content |
|---|---|---|
| `rainy` | bytes | 8-bit RGB PNG of the rainy image |
| `clean` | bytes | 8-bit RGB PNG of the clean image, same size |
| `mask` | bytes | 8-bit gray PNG, 0 (background) or 255 (drop) |
| `name` | bytes | the pair's name, e.g. `12` for `data/12_rain.png` |
| `height`, `width` | int64 | image size |

PNG keeps the pixels exact. Shards are named
`<prefix>-00000-of-00004.tfrecord` and are written under a temporary name and
renamed when complete, so a shard matching `TFRECORD_PATTERN` is never
half-written.

Example:
    >>> write_tfrecords([("data/0_rain.png", "gt/0_clean.png")], "records", num_shards=1)
    >>> ds = tf.data.TFRecordDataset(find_tfrecords("records")).map(parse_example)
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from tf_deraindrop.data.examples import ExampleGraph
from tf_deraindrop.data.pairs import TFRECORD_PATTERN, DatasetError
from tf_deraindrop.images import read_image, to_float_rgb, to_uint8
from tf_deraindrop.masks import compute_mask
from tf_deraindrop.weights import atomic_path

TFRECORD_SUFFIX = ".tfrecord"
# Value of drop pixels in the stored mask (and in `parse_example`'s "mask").
MASK_ON = 255

_FEATURES = {
    "rainy": tf.io.FixedLenFeature([], tf.string),
    "clean": tf.io.FixedLenFeature([], tf.string),
    "mask": tf.io.FixedLenFeature([], tf.string),
    "name": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
}


def shard_name(prefix: str, index: int, num_shards: int) -> str:
    """`train-00001-of-00004.tfrecord` for `("train", 1, 4)`."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{TFRECORD_SUFFIX}"


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Level 1: records are written once per dataset but decoded every epoch;
    # decoding speed hardly depends on the level, writing does.
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _load_rgb(value: Any) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        return to_uint8(read_image(value))
    array = np.asarray(value)
    return (
        array
        if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3
        else to_uint8(to_float_rgb(array))
    )


def _load_mask(value: Any) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        # Any mask image: drop pixels are the bright ones.
        value = read_image(value).mean(axis=-1) >= 0.5
    array = np.asarray(value)
    if array.ndim == 3:
        array = array[..., 0]
    if array.dtype != bool:
        array = array > (127 if array.dtype == np.uint8 else 0.5)
    return array.astype(np.uint8) * MASK_ON


def encode_example(
    rainy: Any,
    clean: Any,
    mask: Any = None,
    name: str = "",
    mask_kwargs: Mapping[str, Any] | None = None,
) -> bytes:
    """One serialized `tf.train.Example`.

    Args:
        rainy: path or array (float RGB in [0, 1], uint8, gray, RGBA, 16-bit).
        clean: path or array, same size.
        mask: path, bool/uint8/float array `(H, W)`, or None to compute it with
            `tf_deraindrop.masks.compute_mask(rainy, clean, **mask_kwargs)`.
        name: the pair's name.
        mask_kwargs: threshold, reduce, close_size, open_size for the mask.

    Raises:
        ValueError: the images or the mask differ in size (message names them).
        tf_deraindrop.images.ImageReadError: a file cannot be read.
    """
    rainy_u8 = _load_rgb(rainy)
    clean_u8 = _load_rgb(clean)
    label = name or (str(rainy) if isinstance(rainy, (str, os.PathLike)) else "pair")
    if rainy_u8.shape != clean_u8.shape:
        raise ValueError(
            f"{label}: rainy and clean images differ in size "
            f"({rainy_u8.shape[1]} x {rainy_u8.shape[0]} vs "
            f"{clean_u8.shape[1]} x {clean_u8.shape[0]})"
        )
    if mask is None:
        mask_u8 = compute_mask(rainy_u8, clean_u8, **dict(mask_kwargs or {})).astype(np.uint8)
        mask_u8 *= MASK_ON
    else:
        mask_u8 = _load_mask(mask)
        if mask_u8.shape != rainy_u8.shape[:2]:
            raise ValueError(
                f"{label}: mask size {mask_u8.shape} differs from the image size "
                f"{rainy_u8.shape[:2]}"
            )
    height, width = rainy_u8.shape[:2]
    feature = {
        "rainy": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png_bytes(rainy_u8)])),
        "clean": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png_bytes(clean_u8)])),
        "mask": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png_bytes(mask_u8)])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(name).encode("utf-8")])),
        "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _as_pair(item: Any, index: int) -> dict[str, Any]:
    if isinstance(item, Mapping):
        pair = dict(item)
    elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
        pair = {"rainy": item[0], "clean": item[1], "mask": item[2] if len(item) == 3 else None}
    else:
        raise TypeError(
            "each pair must be (rainy, clean), (rainy, clean, mask) or a dict with "
            f"'rainy', 'clean' and optional 'mask', 'name'; item {index} is {type(item).__name__}"
        )
    if "rainy" not in pair or "clean" not in pair:
        raise TypeError(f"pair {index} lacks 'rainy' or 'clean'")
    if not pair.get("name"):
        rainy = pair["rainy"]
        if isinstance(rainy, (str, os.PathLike)):
            stem = Path(rainy).stem
            pair["name"] = stem[: -len("_rain")] if stem.endswith("_rain") else stem
        else:
            pair["name"] = str(index)
    return pair


def write_tfrecords(
    pairs: Iterable[Any],
    out_dir: str | os.PathLike,
    num_shards: int = 4,
    prefix: str = "train",
    mask_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Writes pairs into `num_shards` TFRecord files, example `i` in shard `i % num_shards`.

    Args:
        pairs: iterable of `(rainy, clean)`, `(rainy, clean, mask)` or dicts
            with keys `rainy`, `clean` and optional `mask`, `name`; images as
            paths or arrays (see `encode_example`). A missing mask is computed.
        out_dir: folder for the shards (created).
        num_shards: number of shard files (some may be empty for few pairs).
        prefix: shard name prefix, e.g. "train" or "test_a".
        mask_kwargs: `compute_mask` arguments for computed masks.
        progress: show a tqdm progress bar.

    Returns:
        Paths of the shard files written.

    Raises:
        ValueError: a pair is bad (the message names it); no shard is left
            behind under a final name in that case.
        OSError: a shard could not be written (full disk, say), naming it;
            no shard and no temporary file is left behind.

    Example:
        >>> write_tfrecords([("data/0_rain.png", "gt/0_clean.png")], "records", num_shards=1)
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    finals = [out_dir / shard_name(prefix, s, num_shards) for s in range(num_shards)]
    total = len(pairs) if hasattr(pairs, "__len__") else None
    temps: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            # Every shard is renamed only once all are written; on an error none is.
            temps = [stack.enter_context(atomic_path(path)) for path in finals]
            writers = [stack.enter_context(tf.io.TFRecordWriter(path)) for path in temps]
            bar = tqdm(pairs, total=total, desc="tfrecords", unit="pair", disable=not progress)
            for i, item in enumerate(bar):
                pair = _as_pair(item, i)
                writers[i % num_shards].write(
                    encode_example(
                        pair["rainy"], pair["clean"], pair.get("mask"), pair["name"], mask_kwargs
                    )
                )
    except tf.errors.OpError as err:
        # TensorFlow's write errors (a full disk is ResourceExhaustedError)
        # name the temporary file: name the shard instead.
        shard = next((f for f, t in zip(finals, temps) if t in err.message), out_dir)
        raise OSError(f"{shard}: could not be written ({err.message.split('; ')[-1]})") from err
    return finals


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Decodes one serialized example; usable in `tf.data.Dataset.map`.

    Returns:
        `{"rainy": uint8 (H, W, 3), "clean": uint8 (H, W, 3),
        "mask": uint8 (H, W, 1) with values 0 or MASK_ON (255),
        "name": string scalar}`. Scale all three with `/ 255` for float maps.

    Example:
        >>> ds = tf.data.TFRecordDataset(find_tfrecords("records")).map(parse_example)
    """
    features = tf.io.parse_single_example(serialized, _FEATURES)
    return {
        "rainy": tf.io.decode_png(features["rainy"], channels=3, dtype=tf.uint8),
        "clean": tf.io.decode_png(features["clean"], channels=3, dtype=tf.uint8),
        "mask": tf.io.decode_png(features["mask"], channels=1, dtype=tf.uint8),
        "name": features["name"],
    }


def find_tfrecords(directory: str | os.PathLike, prefix: str | None = None) -> list[str]:
    """Sorted shard paths `directory/<prefix>-*.tfrecord` (any prefix by default).

    Raises:
        FileNotFoundError: the folder is missing or holds no shard (the
            message names the folder and the pattern).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such folder of TFRecords")
    pattern = f"{prefix}-{TFRECORD_PATTERN}" if prefix else TFRECORD_PATTERN
    paths = sorted(os.fspath(p) for p in directory.glob(pattern) if not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"{directory}: no TFRecord files matching {pattern}")
    return paths


def load_tfrecord_dataset(
    directory: str | os.PathLike, prefix: str | None = None
) -> tf.data.Dataset:
    """`tf.data.Dataset` of parsed examples from all shards of a folder.

    Example:
        >>> for example in load_tfrecord_dataset("records").take(1):
        ...     print(example["rainy"].shape)
    """
    files = find_tfrecords(directory, prefix)
    dataset = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 4))
    return dataset.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE)


# The training pipeline's reader ------------------------------------------------


def _size_fits(crop_size: int | None):
    """A `Dataset.filter` predicate: the stored size fits the crop (unknown sizes pass)."""
    size_features = {key: _FEATURES[key] for key in ("height", "width", "name")}
    smallest_allowed = crop_size if crop_size is not None else 4

    def size_fits(serialized):
        header = tf.io.parse_single_example(serialized, size_features)
        smallest = tf.minimum(header["height"], header["width"])
        ok = tf.logical_or(tf.equal(smallest, 0), smallest >= smallest_allowed)
        size = [header["width"], "x", header["height"], "(smaller than the crop)"]
        warn = lambda: tf.print(  # noqa: E731
            "warning: skipped TFRecord example",
            header["name"],
            "of",
            *size,
            output_stream=sys.stderr,
        )
        tf.cond(ok, tf.no_op, warn)
        return ok

    return size_fits


def _checked_parser(directory: str, crop_size: int | None, graph: ExampleGraph):
    """`parse_example` plus an in-graph check of the sizes, naming the example and folder."""
    crop = "whole images" if crop_size is None else f"the crop {crop_size} x {crop_size}"

    def parse(serialized):
        example = parse_example(serialized)
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
        with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
            return tf.identity(rainy), clean, graph.binarize(mask)

    return parse


def _shard_files(files: list[str], training: bool, seed, num_shards: int, shard_index: int):
    """Records of this input pipeline's share, shard files shuffled when training."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    # Fewer files than pipelines: every pipeline reads all files, every n-th record.
    shard_records = num_shards > 1 and len(files) < num_shards
    if num_shards > 1 and not shard_records:
        ds = ds.shard(num_shards, shard_index)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.shard(num_shards, shard_index) if shard_records else ds


def records_dataset(
    directory: str,
    *,
    batch_size: int,
    training: bool,
    graph: ExampleGraph,
    seed: int,
    skip_bad: bool,
    shuffle_buffer: int | None,
    cache: bool,
    num_shards: int,
    shard_index: int,
    skip: int,
) -> tf.data.Dataset:
    """The training pipeline on the shards of a folder (masks stored in them).

    `tf_deraindrop.data.make_dataset` calls this for a folder of shards and
    documents the arguments; `graph` is its per-example graph (which holds
    the crop size).

    Raises:
        DatasetError: no shard in the folder, or only empty ones.
    """
    try:
        files = find_tfrecords(directory)
    except FileNotFoundError as err:
        raise DatasetError(str(err)) from err
    if all(os.path.getsize(f) == 0 for f in files):
        # Repeating an empty dataset would wait forever for a first batch.
        raise DatasetError(f"{directory}: the TFRecord files hold no examples.")
    autotune = tf.data.AUTOTUNE
    crop_size = graph.crop
    parse = _checked_parser(directory, crop_size, graph)
    ds = _shard_files(files, training, seed, num_shards, shard_index)
    if skip_bad:
        # The schema stores each example's size: bad sizes are dropped before
        # any PNG is decoded (records written without it read as 0 x 0, unknown).
        ds = ds.filter(_size_fits(crop_size))
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
        ds = ds.map(lambda i, ex: graph.crop_example(i, *ex), num_parallel_calls=autotune)
    else:
        ds = ds.map(
            lambda i, serialized: graph.crop_example(i, *parse(serialized)),
            num_parallel_calls=autotune,
        )
    if skip_bad:
        # Corrupt records or pixel data drop the example with a logged warning.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=autotune)
    return ds.prefetch(autotune)
