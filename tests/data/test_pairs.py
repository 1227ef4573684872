"""The input pipeline: finding pairs, crops, masks, validation sets, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tf_deraindrop import data
from tf_deraindrop.data import DatasetError, DatasetWarning, Pair
from tf_deraindrop.data.masks import compute_mask


def _scene(rng, h, w):
    """Noise plus a left-to-right ramp in red: crops are unique, flips visible."""
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[..., 0] = np.linspace(0, 255, w).astype(np.uint8)[None, :]
    return image


def _drops(rng, clean):
    """Brightens a few discs by 60 levels: those are the pair's raindrops."""
    h, w = clean.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(3, 8)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    rainy = clean.astype(np.int32)
    rainy[mask] = np.minimum(rainy[mask] + 60, 255)
    return rainy.astype(np.uint8), mask


def make_layout(root, sizes, clean_suffix=".png", masks=False, seed=0):
    """Writes a Raindrop-layout folder; returns {k: (rainy, clean, mask)} arrays."""
    rng = np.random.default_rng(seed)
    for sub in ("data", "gt") + (("mask",) if masks else ()):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    arrays = {}
    for k, (h, w) in enumerate(sizes):
        clean = _scene(rng, h, w)
        rainy, mask = _drops(rng, clean)
        Image.fromarray(rainy).save(os.path.join(root, "data", f"{k}_rain.png"))
        suffix = clean_suffix if isinstance(clean_suffix, str) else clean_suffix[k]
        if suffix == ".jpg":
            Image.fromarray(clean).save(os.path.join(root, "gt", f"{k}_clean.jpg"), quality=95)
            clean = np.asarray(Image.open(os.path.join(root, "gt", f"{k}_clean.jpg")))
        else:
            Image.fromarray(clean).save(os.path.join(root, "gt", f"{k}_clean{suffix}"))
        if masks:
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                os.path.join(root, "mask", f"{k}_mask.png")
            )
        arrays[str(k)] = (rainy, clean, mask)
    return arrays


def _locate(crop, image):
    """Offset (y, x) and flip of `crop` inside `image` (exact match)."""
    c = crop.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(image, (c, c), axis=(0, 1))
    for flip in (False, True):
        patch = np.moveaxis(crop[:, ::-1] if flip else crop, -1, 0)  # windows are (.., 3, c, c)
        hits = np.argwhere(np.all(windows == patch, axis=(2, 3, 4)))
        if len(hits):
            return int(hits[0][0]), int(hits[0][1]), flip
    raise AssertionError("crop not found in the image")


def _find(crop, image):
    try:
        return _locate(crop, image)
    except AssertionError:
        return None


def _u8(batch):
    return np.round(np.asarray(batch) * 255.0).astype(np.uint8)


# find_pairs ---------------------------------------------------------------------


def test_find_pairs_matches_by_number_across_formats(tmp_path):
    make_layout(tmp_path, [(20, 24)] * 3, clean_suffix=[".png", ".jpg", ".png"])
    # Number 10 sorts after 2; a clean image without a rainy one is ignored.
    os.rename(tmp_path / "data" / "1_rain.png", tmp_path / "data" / "10_rain.png")
    os.rename(tmp_path / "gt" / "1_clean.jpg", tmp_path / "gt" / "10_clean.jpg")
    Image.new("RGB", (24, 20)).save(tmp_path / "gt" / "7_clean.png")
    (tmp_path / "data" / "notes.txt").write_text("not an image")
    pairs = data.find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["0", "2", "10"]
    assert pairs[2].rainy == str(tmp_path / "data" / "10_rain.png")
    assert pairs[2].clean == str(tmp_path / "gt" / "10_clean.jpg")
    assert all(p.mask is None for p in pairs)


def test_find_pairs_reads_mask_folder(tmp_path):
    make_layout(tmp_path, [(20, 24)] * 2, masks=True)
    os.remove(tmp_path / "mask" / "1_mask.png")
    pairs = data.find_pairs(tmp_path)
    assert pairs[0].mask == str(tmp_path / "mask" / "0_mask.png")
    assert pairs[1].mask is None


def test_find_pairs_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        data.find_pairs(tmp_path / "absent")
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetError, match="gt: missing folder"):
        data.find_pairs(tmp_path)
    (tmp_path / "gt").mkdir()
    with pytest.raises(DatasetError, match="no pairs found"):
        data.find_pairs(tmp_path)


def test_rainy_without_clean_partner(tmp_path):
    make_layout(tmp_path, [(20, 24)] * 3)
    os.remove(tmp_path / "gt" / "1_clean.png")
    with pytest.raises(DatasetError, match=r"1_rain\.png: no clean partner"):
        data.find_pairs(tmp_path)
    problems = []
    with pytest.warns(DatasetWarning, match="Skipped 1 of 3"):
        pairs = data.find_pairs(tmp_path, skip_bad=True, problems=problems)
    assert [p.name for p in pairs] == ["0", "2"]
    assert problems[0][0].endswith("1_rain.png")


def test_ambiguous_partners(tmp_path):
    make_layout(tmp_path, [(20, 24)] * 2)
    Image.new("RGB", (24, 20)).save(tmp_path / "gt" / "1_clean.jpg")
    with pytest.raises(DatasetError, match=r"two clean partners: .*1_clean\.jpg, .*1_clean\.png"):
        data.find_pairs(tmp_path)
    with pytest.warns(DatasetWarning, match="Skipped 1 of 2"):
        assert [p.name for p in data.find_pairs(tmp_path, skip_bad=True)] == ["0"]


def test_split_validation():
    pairs = [Pair(f"r{i}", f"c{i}", None, str(i)) for i in range(20)]
    train, val = data.split_validation(pairs, 0.2, seed=3)
    assert len(val) == 4 and len(train) == 16
    assert sorted(train + val, key=lambda p: int(p.name)) == pairs
    assert data.split_validation(pairs, 0.2, seed=3) == (train, val)
    assert data.split_validation(pairs, 0.2, seed=4)[1] != val
    assert len(data.split_validation(pairs[:3], 0.01, seed=0)[1]) == 1
    with pytest.raises(ValueError, match="leaves none"):
        data.split_validation(pairs[:1], 0.5, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        data.split_validation(pairs, 1.0, seed=0)


# make_dataset ---------------------------------------------------------------------


def test_training_batches_identical_crops_and_flips(tmp_path):
    arrays = make_layout(tmp_path, [(40, 52), (44, 48)], clean_suffix=[".png", ".jpg"])
    ds = data.make_dataset(tmp_path, crop_size=32, batch_size=2, seed=5)
    assert ds.element_spec[0].shape.as_list() == [2, 32, 32, 3]
    assert ds.element_spec[2].shape.as_list() == [2, 32, 32, 1]
    flips, offsets = set(), set()
    for rainy, clean, mask in ds.take(6):  # 12 examples: the dataset repeats
        assert rainy.dtype == clean.dtype == mask.dtype == "float32"
        assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
        assert 0.0 <= float(np.min(rainy)) and float(np.max(rainy)) <= 1.0
        for i in range(2):
            r8, c8 = _u8(rainy[i]), _u8(clean[i])
            found = [(k, _find(c8, arrays[k][1])) for k in arrays]
            found = [(k, where) for k, where in found if where is not None]
            assert len(found) == 1, "the clean crop must come from exactly one image"
            key, (y, x, flip) = found[0]
            full_rainy, full_clean, _ = arrays[key]
            window = (slice(y, y + 32), slice(x, x + 32))
            expected_rainy = full_rainy[window][:, ::-1] if flip else full_rainy[window]
            # The same window and flip on the rainy image and on the mask.
            np.testing.assert_array_equal(r8, expected_rainy)
            full_mask = compute_mask(full_rainy, full_clean)[window]
            expected_mask = full_mask[:, ::-1] if flip else full_mask
            np.testing.assert_array_equal(mask[i, ..., 0].numpy().astype(bool), expected_mask)
            flips.add(flip)
            offsets.add((y, x))
    assert flips == {False, True}
    assert len(offsets) > 3


def test_jpeg_pixels_match_pil(tmp_path):
    arrays = make_layout(tmp_path, [(40, 52)], clean_suffix=".jpg")
    ds = data.make_dataset(tmp_path, crop_size=None, training=False)
    _, clean, _ = next(iter(ds))
    # The pipeline decodes JPEG exactly as PIL does (what evaluation sees).
    np.testing.assert_array_equal(_u8(clean[0]), arrays["0"][1])


def test_seed_fixes_the_stream(tmp_path):
    make_layout(tmp_path, [(40, 52)] * 3)

    def first(seed):
        ds = data.make_dataset(tmp_path, crop_size=16, batch_size=3, seed=seed)
        return [b[0].numpy() for b in ds.take(2)]

    a, b, c = first(1), first(1), first(2)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert not np.array_equal(np.stack(a), np.stack(c))


def test_stored_masks_are_used(tmp_path):
    arrays = make_layout(tmp_path, [(40, 52)], masks=True)
    # A stored mask that differs from the computed one: the left half only.
    stored = np.zeros((40, 52), np.uint8)
    stored[:, :26] = 255
    Image.fromarray(stored).save(tmp_path / "mask" / "0_mask.png")
    ds = data.make_dataset(tmp_path, crop_size=None, training=False)
    _, _, mask = next(iter(ds))
    np.testing.assert_array_equal(mask[0, ..., 0].numpy(), stored[:40, :52] / 255)
    assert not np.array_equal(stored > 0, compute_mask(*arrays["0"][:2]))


def test_validation_is_one_ordered_pass_of_centre_crops(tmp_path):
    arrays = make_layout(tmp_path, [(40, 52), (44, 48), (38, 50)])
    ds = data.make_dataset(tmp_path, crop_size=24, batch_size=2, training=False)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 1]
    rainy = np.concatenate([b[0].numpy() for b in batches])
    for i, (full, _, _) in enumerate(arrays.values()):
        h, w = full.shape[:2]
        oy, ox = (h - 24) // 2, (w - 24) // 2
        np.testing.assert_array_equal(_u8(rainy[i]), full[oy : oy + 24, ox : ox + 24])
    assert len(list(ds)) == 2  # a second pass is the same single pass


def test_whole_images_cropped_to_multiples_of_four(tmp_path):
    arrays = make_layout(tmp_path, [(38, 50)])
    rainy, clean, mask = next(iter(data.make_dataset(tmp_path, crop_size=None, training=False)))
    assert rainy.shape == (1, 36, 48, 3) and mask.shape == (1, 36, 48, 1)
    np.testing.assert_array_equal(_u8(clean[0]), arrays["0"][1][:36, :48])


def test_mask_with_morphology_on_crops_equals_full_image_mask(tmp_path):
    make_layout(tmp_path, [(48, 56)])
    # Speckled differences everywhere: closing and opening change pixels right
    # at the crop's border, where a crop computed without margin would differ.
    rng = np.random.default_rng(4)
    clean = np.asarray(Image.open(tmp_path / "gt" / "0_clean.png"))
    speckle = rng.random((48, 56)) < 0.45
    rainy = clean.copy()
    rainy[speckle] = 255 - rainy[speckle] // 4
    Image.fromarray(rainy).save(tmp_path / "data" / "0_rain.png")
    options = {"close_size": 5, "open_size": 3}
    ds = data.make_dataset(tmp_path, crop_size=24, training=False, mask_options=options)
    _, _, mask = next(iter(ds))
    full = compute_mask(rainy, clean, **options)
    np.testing.assert_array_equal(mask[0, ..., 0].numpy().astype(bool), full[12:36, 16:40])
    crop_alone = compute_mask(rainy[12:36, 16:40], clean[12:36, 16:40], **options)
    assert not np.array_equal(crop_alone, full[12:36, 16:40])  # the margin matters here
    # A higher threshold marks fewer pixels (the parameter reaches compute_mask).

    def coverage(threshold):
        ds = data.make_dataset(tmp_path, crop_size=None, training=False, mask_threshold=threshold)
        return float(np.mean(next(iter(ds))[2]))

    expected = compute_mask(rainy, clean, threshold=0.5).mean()
    assert coverage(0.5) == pytest.approx(expected)
    assert coverage(0.9) < coverage(0.5)


def test_list_of_pairs_and_pil_only_formats(tmp_path):
    arrays = make_layout(tmp_path, [(40, 52)])
    rainy_tif = tmp_path / "rainy.tif"
    Image.fromarray(arrays["0"][0]).save(rainy_tif)
    pair = Pair(str(rainy_tif), str(tmp_path / "gt" / "0_clean.png"), None, "x")
    rainy, _, _ = next(iter(data.make_dataset([pair], crop_size=None, training=False)))
    np.testing.assert_array_equal(_u8(rainy[0]), arrays["0"][0][:40, :52])


def test_sharding_splits_the_pairs(tmp_path):
    make_layout(tmp_path, [(20, 24)] * 3)

    def names(index):
        ds = data.make_dataset(
            tmp_path, crop_size=20, training=False, num_shards=2, shard_index=index
        )
        return [_u8(b[1][0]).tobytes() for b in ds]

    first, second = names(0), names(1)
    assert len(first) == 2 and len(second) == 1
    assert not set(first) & set(second)


# Bad input --------------------------------------------------------------------------


def _truncate(path, keep=0.5):
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])


def test_sizes_differ(tmp_path):
    make_layout(tmp_path, [(40, 52)])
    Image.new("RGB", (50, 40)).save(tmp_path / "gt" / "0_clean.png")
    with pytest.raises(DatasetError, match=r"0_rain\.png \(52 x 40\) and .*0_clean\.png"):
        data.make_dataset(tmp_path, crop_size=32)


@pytest.mark.parametrize("kind", ["truncated png", "truncated jpg", "not an image"])
def test_unreadable_image_named(tmp_path, kind):
    make_layout(tmp_path, [(40, 52)], clean_suffix=".jpg")
    bad = tmp_path / ("gt/0_clean.jpg" if kind == "truncated jpg" else "data/0_rain.png")
    if kind == "not an image":
        bad.write_text("hello")
    else:
        _truncate(bad)
    with pytest.raises(DatasetError, match=f"{bad.name}: not a readable image"):
        data.make_dataset(tmp_path, crop_size=32)


def test_crop_larger_than_image(tmp_path):
    make_layout(tmp_path, [(40, 52), (30, 52)])
    with pytest.raises(DatasetError, match=r"1_rain\.png \(52 x 30\) is smaller than the crop"):
        data.make_dataset(tmp_path, crop_size=32)


def test_skip_bad_counts_and_trains_on_the_rest(tmp_path):
    arrays = make_layout(tmp_path, [(40, 52)] * 4)
    _truncate(tmp_path / "data" / "1_rain.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "gt" / "2_clean.png")
    os.remove(tmp_path / "gt" / "3_clean.png")
    problems = []
    with pytest.warns(DatasetWarning) as record:
        ds = data.make_dataset(
            tmp_path, crop_size=32, batch_size=2, seed=0, skip_bad=True, problems=problems
        )
    messages = " ".join(str(w.message) for w in record)
    assert "Skipped 1 of 4 rainy images" in messages  # 3 has no partner
    assert "Skipped 2 of 3 pairs" in messages  # 1 truncated, 2 of another size
    assert len(problems) == 3
    for _, clean, _ in ds.take(2):
        for c in _u8(clean):
            _locate(c, arrays["0"][1])  # only pair 0 is left


def test_no_usable_pair_even_with_skip_bad(tmp_path):
    make_layout(tmp_path, [(20, 24)])
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="No usable pair"):
        data.make_dataset(tmp_path, crop_size=32, skip_bad=True)


def test_bad_arguments(tmp_path):
    make_layout(tmp_path, [(40, 52)])
    with pytest.raises(ValueError, match="multiple of 4"):
        data.make_dataset(tmp_path, crop_size=30)
    with pytest.raises(ValueError, match="needs a crop_size"):
        data.make_dataset(tmp_path, crop_size=None)
    with pytest.raises(DatasetError, match="empty list"):
        data.make_dataset([], crop_size=32)


# TFRecords --------------------------------------------------------------------------


def _write_records(tmp_path, sizes):
    from tf_deraindrop.data import record_writer

    make_layout(tmp_path / "pairs", sizes)
    pairs = data.find_pairs(tmp_path / "pairs")
    record_writer.write_tfrecords(
        [(p.rainy, p.clean) for p in pairs], tmp_path / "rec", num_shards=2, progress=False
    )
    return pairs


def test_tfrecords_give_the_pairs_pixels(tmp_path):
    pairs = _write_records(tmp_path, [(40, 52), (44, 48), (36, 40)])
    from_pairs = list(data.make_dataset(pairs, crop_size=None, training=False))
    from_records = list(data.make_dataset(tmp_path / "rec", crop_size=None, training=False))
    # Shards interleave the pairs; match them by content.
    key = {_u8(b[1][0]).tobytes(): b for b in from_pairs}
    assert len(from_records) == 3
    for rainy, clean, mask in from_records:
        expected = key[_u8(clean[0]).tobytes()]
        np.testing.assert_array_equal(rainy.numpy(), expected[0].numpy())
        np.testing.assert_array_equal(mask.numpy(), expected[2].numpy())
    train = data.make_dataset(tmp_path / "rec", crop_size=32, batch_size=2, seed=0)
    assert [tuple(t.shape) for t in next(iter(train))] == [(2, 32, 32, 3)] * 2 + [(2, 32, 32, 1)]


def test_tfrecords_too_small_for_crop(tmp_path):
    import tensorflow as tf

    _write_records(tmp_path, [(40, 52), (24, 28)])
    ds = data.make_dataset(tmp_path / "rec", crop_size=32, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"example 1 \(28 x 24\) in .*rec"):
        for _ in ds.take(4):
            pass
    ds = data.make_dataset(tmp_path / "rec", crop_size=32, seed=0, skip_bad=True)
    assert all(b[0].shape == (1, 32, 32, 3) for b in ds.take(4))


def test_empty_tfrecord_folder(tmp_path):
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"")
    with pytest.raises(DatasetError, match="hold no examples"):
        data.make_dataset(tmp_path)


@pytest.mark.parametrize("source", ["pairs", "records", "cached"])
def test_skip_resumes_the_same_stream(tmp_path, source):
    _write_records(tmp_path, [(40, 52), (44, 48), (36, 40)])
    path = tmp_path / ("rec" if source == "records" else "pairs")
    options = dict(crop_size=16, batch_size=2, seed=3, cache=source == "cached")
    whole = [b[0].numpy() for b in data.make_dataset(path, **options).take(5)]
    resumed = [b[0].numpy() for b in data.make_dataset(path, skip=3, **options).take(2)]
    np.testing.assert_array_equal(np.stack(resumed), np.stack(whole[3:]))


def test_checked_pairs_with_check_false_read_no_header_and_give_the_same_stream(
    tmp_path, monkeypatch
):
    make_layout(tmp_path, [(40, 52), (44, 48), (36, 40)])
    pairs, _ = data.check_pairs(data.find_pairs(tmp_path), crop_size=16)
    options = dict(crop_size=16, batch_size=2, seed=3)
    checked = [b[0].numpy() for b in data.make_dataset(pairs, skip=2, **options).take(3)]

    opened = []

    def spy(path):
        opened.append(path)
        raise AssertionError(f"header read: {path}")

    monkeypatch.setattr("tf_deraindrop.data.pairs.image_size", spy)
    with pytest.raises(AssertionError, match="header read"):
        data.make_dataset(pairs, **options)
    opened.clear()
    unchecked = data.make_dataset(pairs, skip=2, check=False, **options)
    got = [b[0].numpy() for b in unchecked.take(3)]
    assert opened == []
    np.testing.assert_array_equal(np.stack(got), np.stack(checked))


def test_pairs_module_loads_without_tensorflow():
    import subprocess
    import sys

    # argv[0] "-m" as while `python -m tf_deraindrop.<tool>` imports the package,
    # which then leaves the Keras classes to the tool: only this module's own
    # imports count.
    code = (
        "import sys; sys.argv[:1] = ['-m']; "
        "import tf_deraindrop.data.pairs, tf_deraindrop.data as d; "
        "d.find_pairs, d.check_pairs, d.DEFAULT_MASK_THRESHOLD; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_scan_folder_reports_what_it_cannot_use(tmp_path):
    from tf_deraindrop.data.pairs import scan_folder

    for name in ("2_rain.png", "10_rain.jpg", "10_rain.png", "photo.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "3_rain.png").mkdir()  # a folder is not an image
    (tmp_path / ".4_rain.png").write_bytes(b"")  # hidden
    scan = scan_folder(tmp_path, "rainy")
    assert sorted(scan.found) == ["10", "2"]
    assert [os.path.basename(p) for p in scan.found["10"]] == ["10_rain.jpg", "10_rain.png"]
    assert [os.path.basename(p) for p in scan.misnamed] == ["photo.png"]
    assert [os.path.basename(p) for p in scan.not_images] == ["notes.txt"]
    assert scan.image_count == 4
