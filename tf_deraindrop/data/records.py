"""Sharded TFRecords of rainy/clean/mask triples: the schema and the reader.

`record_writer.write_tfrecords` writes them (`deraindrop prepare
--tfrecords` calls it); the training pipeline reads them through
`records_dataset`.

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
    >>> ds = tf.data.TFRecordDataset(find_tfrecords("records")).map(parse_example)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import tensorflow as tf

from tf_deraindrop.data.examples import ExampleGraph
from tf_deraindrop.data.pairs import TFRECORD_PATTERN, DatasetError

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
