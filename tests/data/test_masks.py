"""The mask of a rainy/clean pair (docs/architecture.md, section 6)."""

from __future__ import annotations

import numpy as np
import pytest

from tf_deraindrop.data.masks import compute_mask, mask_coverage
from tf_deraindrop.utils.images import read_image


def _pair() -> tuple[np.ndarray, np.ndarray]:
    clean = np.full((20, 20, 3), 100, np.uint8)
    rainy = clean.copy()
    rainy[2, 2] = (130, 100, 100)  # max 30: on for max >= 30
    rainy[2, 5] = (129, 100, 100)  # max 29: off
    rainy[5, 5] = (112, 112, 111)  # sum 35, max 12: on only for sum >= 35
    rainy[8, 8] = (112, 112, 110)  # sum 34: off
    return rainy, clean


def test_thresholds_of_both_recipes_on_exact_uint8_levels():
    rainy, clean = _pair()
    by_max = compute_mask(rainy, clean)
    assert by_max.dtype == bool and by_max.shape == (20, 20)
    assert set(zip(*np.nonzero(by_max))) == {(2, 2)}
    by_sum = compute_mask(rainy, clean, threshold=35 / 255, reduce="sum")
    assert set(zip(*np.nonzero(by_sum))) == {(5, 5)}  # (2, 2) sums to 30 only
    # Float input in [0, 1] gives the same mask as uint8.
    as_float = compute_mask(rainy.astype(np.float32) / 255, clean.astype(np.float32) / 255)
    assert np.array_equal(as_float, by_max)
    # Darker pixels count as well as brighter ones.
    assert np.array_equal(compute_mask(clean, rainy), by_max)


def test_closing_fills_holes_and_opening_removes_specks_without_eroding_the_border():
    clean = np.zeros((40, 40, 3), np.float32)
    rainy = clean.copy()
    rainy[10:20, 10:20] = 1.0
    rainy[14, 14] = 0.0  # a hole in a drop
    rainy[30, 30] = 1.0  # a speck
    rainy[:, 36:] = 1.0  # a drop cut by the right border
    raw = compute_mask(rainy, clean)
    assert not raw[14, 14] and raw[30, 30]
    closed = compute_mask(rainy, clean, close_size=3)
    assert closed[14, 14] and closed[30, 30]
    cleaned = compute_mask(rainy, clean, close_size=3, open_size=3)
    assert cleaned[14, 14] and not cleaned[30, 30]
    assert cleaned[10:20, 10:20].all()
    assert cleaned[:, 36:].all() and not cleaned[:, 30:36].any()


def test_bad_arguments_are_explained():
    rainy, clean = _pair()
    with pytest.raises(ValueError, match="differ in size"):
        compute_mask(rainy, clean[:10])
    with pytest.raises(ValueError, match="reduce"):
        compute_mask(rainy, clean, reduce="mean")
    with pytest.raises(ValueError, match="threshold"):
        compute_mask(rainy, clean, threshold=0)


def test_real_pair_coverage(raindrop_pairs_dir):
    """The figures quoted in the module's docstring and the README ("The mask")."""
    rainy = read_image(raindrop_pairs_dir / "data" / "0_rain.png")
    clean = read_image(raindrop_pairs_dir / "gt" / "0_clean.png")
    assert mask_coverage(compute_mask(rainy, clean)) == pytest.approx(0.209, abs=0.002)
    morph = compute_mask(rainy, clean, close_size=5, open_size=5)
    assert mask_coverage(morph) == pytest.approx(0.304, abs=0.002)
    tf_port = compute_mask(rainy, clean, 35 / 255, "sum", close_size=5, open_size=5)
    assert mask_coverage(tf_port) == pytest.approx(0.618, abs=0.002)
