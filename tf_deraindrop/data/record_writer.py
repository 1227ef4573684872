"""Writes rainy/clean/mask triples as sharded TFRecords (the schema is `records`')."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from tf_deraindrop.data.masks import compute_mask
from tf_deraindrop.data.records import MASK_ON, shard_name
from tf_deraindrop.utils.files import atomic_path
from tf_deraindrop.utils.images import read_image, to_float_rgb, to_uint8


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
            `tf_deraindrop.data.masks.compute_mask(rainy, clean, **mask_kwargs)`.
        name: the pair's name.
        mask_kwargs: threshold, reduce, close_size, open_size for the mask.

    Raises:
        ValueError: the images or the mask differ in size (message names them).
        tf_deraindrop.utils.images.ImageReadError: a file cannot be read.
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
