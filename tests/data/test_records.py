"""TFRecords of pairs: exact round trip, sharding, computed masks, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_deraindrop.data.masks import compute_mask
from tf_deraindrop.data.record_writer import write_tfrecords
from tf_deraindrop.data.records import (
    MASK_ON,
    TFRECORD_PATTERN,
    find_tfrecords,
    load_tfrecord_dataset,
    parse_example,
)


def _random_pair(rng: np.random.Generator, h: int, w: int):
    clean = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    rainy = clean.copy()
    rainy[: h // 2, : w // 3] = rng.integers(0, 256, (h // 2, w // 3, 3), dtype=np.uint8)
    return rainy, clean


def test_round_trip_same_pixels_names_and_masks(tmp_path):
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(5):
        rainy, clean = _random_pair(rng, 24 + 4 * i, 32)
        mask = rng.random(rainy.shape[:2]) > 0.5 if i % 2 else None
        pairs.append({"rainy": rainy, "clean": clean, "mask": mask, "name": f"p{i}"})
    shards = write_tfrecords(pairs, tmp_path / "rec", num_shards=2, prefix="train", progress=False)
    assert [p.name for p in shards] == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    assert find_tfrecords(tmp_path / "rec") == [str(p) for p in shards]
    assert sorted(p.name for p in (tmp_path / "rec").glob(TFRECORD_PATTERN)) == [
        p.name for p in shards
    ]

    got = {}
    for example in tf.data.TFRecordDataset([str(p) for p in shards]).map(parse_example):
        got[example["name"].numpy().decode()] = example
    assert sorted(got) == [f"p{i}" for i in range(5)]
    for pair in pairs:
        example = got[pair["name"]]
        assert example["rainy"].dtype == tf.uint8 and example["mask"].dtype == tf.uint8
        np.testing.assert_array_equal(example["rainy"].numpy(), pair["rainy"])
        np.testing.assert_array_equal(example["clean"].numpy(), pair["clean"])
        mask = example["mask"].numpy()
        assert mask.shape == pair["rainy"].shape[:2] + (1,)
        assert set(np.unique(mask)) <= {0, MASK_ON}
        expected = (
            compute_mask(pair["rainy"], pair["clean"]) if pair["mask"] is None else pair["mask"]
        )
        np.testing.assert_array_equal(mask[..., 0] == MASK_ON, expected)


def test_paths_grayscale_and_16_bit_files_are_converted(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "1_rain.png")
    wide = (gray.astype(np.uint16) * 257)[..., None].repeat(3, axis=-1)
    Image.fromarray(wide[..., 0]).save(tmp_path / "1_clean.png")  # 16-bit gray
    mask = np.zeros((20, 30), np.uint8)
    mask[5:9, 5:9] = 255
    Image.fromarray(mask).save(tmp_path / "1_mask.png")
    pairs = [(tmp_path / "1_rain.png", tmp_path / "1_clean.png", tmp_path / "1_mask.png")]
    write_tfrecords(pairs, tmp_path / "rec", num_shards=1, progress=False)
    (example,) = list(load_tfrecord_dataset(tmp_path / "rec"))
    assert example["name"].numpy() == b"1"
    np.testing.assert_array_equal(example["rainy"].numpy(), np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(example["clean"].numpy(), np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(example["mask"].numpy()[..., 0], mask)


def test_bad_pair_names_it_and_leaves_no_shard(tmp_path):
    rng = np.random.default_rng(2)
    good = _random_pair(rng, 16, 16)
    bad = {"rainy": np.zeros((16, 16, 3), np.uint8), "clean": np.zeros((8, 16, 3), np.uint8)}
    bad["name"] = "broken7"
    with pytest.raises(ValueError, match="broken7.*differ in size"):
        write_tfrecords([good, bad], tmp_path / "rec", num_shards=2, progress=False)
    assert list((tmp_path / "rec").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        find_tfrecords(tmp_path / "rec")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_tfrecords(tmp_path / "missing")
    with pytest.raises(TypeError, match="item 0"):
        write_tfrecords([42], tmp_path / "rec2", progress=False)
