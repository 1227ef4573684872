"""The training and validation input pipeline: `tf.data` batches of rainy/clean/mask.

Sources:

* a directory in the Raindrop layout (`tf_deraindrop.data.pairs`);
* a directory of TFRecord shards written by `tf_deraindrop.data.records`;
* a list of `Pair`, checked here (`check=True`) or already checked by the
  caller with `check_pairs` (`check=False`: no file is opened until the
  first batch, which a training run that builds one dataset per epoch wants).

The per-example graph (decoding, crop, mask) is `tf_deraindrop.data.examples`.

Example:
    >>> ds = make_dataset("Raindrop/train", crop_size=224, batch_size=4, seed=0)
    >>> rainy, clean, mask = next(iter(ds))  # (4, 224, 224, 3/3/1) float32 in [0, 1]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tf_deraindrop.data import records
from tf_deraindrop.data.examples import TF_DECODABLE, ExampleGraph
from tf_deraindrop.data.masks import DEFAULT_THRESHOLD
from tf_deraindrop.data.pairs import DatasetError, Pair, check_pairs, find_pairs, is_tfrecord_dir
from tf_deraindrop.utils.images import ImageReadError, is_turned


def _pairs_source(source, crop_size, skip_bad, problems, check):
    """The pairs of `source` and their sizes (None when `check` is False)."""
    if isinstance(source, (str, os.PathLike)):
        pairs = find_pairs(source, skip_bad=skip_bad, problems=problems)
    else:
        pairs = list(source)
        if not pairs:
            raise DatasetError("No pairs given (an empty list).")
        if not all(isinstance(p, Pair) for p in pairs):
            raise TypeError("make_dataset takes a directory or a list of data.Pair.")
    if not check:
        return pairs, None
    return check_pairs(pairs, crop_size=crop_size, skip_bad=skip_bad, problems=problems)


def _check_arguments(crop_size, batch_size, training, skip, num_shards, shard_index) -> None:
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


def make_dataset(
    source: str | os.PathLike | Sequence[Pair],
    *,
    crop_size: int | None = 224,
    batch_size: int = 1,
    training: bool = True,
    mask_threshold: float = DEFAULT_THRESHOLD,
    mask_options: dict | None = None,
    seed: int | None = None,
    skip_bad: bool = False,
    shuffle_buffer: int | None = None,
    cache: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    problems: list[tuple[str, str]] | None = None,
    skip: int = 0,
    check: bool = True,
) -> tf.data.Dataset:
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
            stored mask (docs/architecture.md, section 6; 30/255 by default). TFRecords always
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
        check: check every pair from its headers first (`check_pairs`). Pass
            False only with a list of pairs that `check_pairs` has passed (with
            this `crop_size`): then no file is opened here, which a run that
            builds a dataset per epoch wants. Ignored for TFRecords.

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
    _check_arguments(crop_size, batch_size, training, skip, num_shards, shard_index)
    mask_options = dict(mask_options or {})
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    graph_args = (crop_size, training, seed, mask_threshold, mask_options)
    # What both readers take; the crop_size rides in the example graph.
    stream = dict(
        batch_size=batch_size,
        training=training,
        seed=seed,
        skip_bad=skip_bad,
        shuffle_buffer=shuffle_buffer,
        cache=cache,
        skip=skip,
    )

    if isinstance(source, (str, os.PathLike)) and is_tfrecord_dir(source):
        graph = ExampleGraph(*graph_args, native=True)
        return records.records_dataset(
            os.fspath(source), graph=graph, num_shards=num_shards, shard_index=shard_index, **stream
        )

    pairs, sizes = _pairs_source(source, crop_size, skip_bad, problems, check)
    whole_sizes = {(h - h % 4, w - w % 4) for h, w in sizes or ()}
    if crop_size is None and batch_size > 1 and len(whole_sizes) > 1:
        raise DatasetError(
            "Whole images of different sizes cannot be batched: use batch_size=1 or a crop_size."
        )
    pairs = pairs[shard_index::num_shards]
    if not pairs:
        raise DatasetError(f"Shard {shard_index} of {num_shards} holds no pair.")
    files = [p for pair in pairs for p in (pair.rainy, pair.clean, pair.mask) if p is not None]
    native = all(os.path.splitext(p)[1].lower() in TF_DECODABLE for p in files)
    # A photo stored turned, with an EXIF tag saying so, is read upright by
    # PIL (read_image); TF's decoders would give it sideways.
    try:
        turned = [p for p in files if native and is_turned(p)]
    except ImageReadError as err:
        raise DatasetError(str(err)) from err
    paths = tf.data.Dataset.from_tensor_slices(
        (
            [p.rainy for p in pairs],
            [p.clean for p in pairs],
            [p.mask or "" for p in pairs],
        )
    )
    graph = ExampleGraph(*graph_args, native=native, pil_paths=turned)
    return _finish(paths, graph, n=len(pairs), **stream)


def _finish(paths, pipe, *, n, training, batch_size, seed, shuffle_buffer, cache, skip_bad, skip):
    """Decode, shuffle, repeat, crop, batch, prefetch in the order that fits `cache`."""
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
