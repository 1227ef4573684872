"""The realism statistics on tiny constructed images with known answers."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "synthetic"))

import realism_stats as rs  # noqa: E402


def _disc(shape=(100, 120), centre=(50, 60), radius=20.0) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def _texture(shape=(100, 120), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = 0.4 + 0.1 * rng.standard_normal(shape)
    return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)


def test_known_disc_gives_its_brightening_radius_and_coverage():
    clean = np.full((100, 120, 3), 0.4)
    disc = _disc()
    rainy = clean + 0.2 * disc[..., None]
    stats = rs.pair_stats(rainy, clean)
    assert stats["brightening"] == pytest.approx(0.2, abs=1e-9)
    assert stats["radius_max"] == pytest.approx(0.2, abs=0.005)
    assert stats["drops"] == 1
    assert stats["coverage"] == pytest.approx(disc.mean())
    assert stats["colour_shift"] == pytest.approx(0.0, abs=1e-9)


def test_detail_kept_is_the_energy_ratio():
    clean = _texture()
    disc = _disc()
    # Inside the disc the texture keeps half its amplitude (a quarter of its energy).
    rainy = np.where(disc[..., None], 0.4 + 0.5 * (clean - 0.4) + 0.2, clean)
    inner = ndimage.binary_erosion(disc, iterations=6)  # away from the disc's own edge
    assert rs.detail_kept(rainy, clean, inner) == pytest.approx(0.25, rel=0.05)
    assert rs.detail_kept(clean, clean, inner) == pytest.approx(1.0)


def test_colour_shift_and_saturation():
    clean = np.full((50, 60, 3), 0.3)
    clean[..., 0] = 0.5  # some chroma
    mask = np.zeros((50, 60), bool)
    mask[10:30, 10:40] = True
    rainy = clean + np.array([0.1, 0.0, 0.0]) * mask[..., None]
    expected = np.linalg.norm(np.array([0.1, 0, 0]) - 0.1 / 3)
    assert rs.colour_shift(rainy, clean, mask) == pytest.approx(expected)
    assert rs.saturation_kept(rainy, clean, mask) == pytest.approx(0.3 / 0.2)


def test_soft_edges_are_wider_than_hard_ones():
    clean = np.full((100, 120, 3), 0.3)
    hard = clean + 0.4 * _disc()[..., None]
    soft_step = ndimage.gaussian_filter(_disc().astype(float), 5.0)
    soft = clean + 0.4 * soft_step[..., None]
    hard_width = rs.edge_width(hard, clean, rs.compute_mask(hard, clean))
    soft_width = rs.edge_width(soft, clean, rs.compute_mask(soft, clean))
    assert hard_width < 2.5
    assert soft_width > 2 * hard_width


def test_drop_radii_ignore_specks_and_count_components():
    mask = _disc(radius=10) | _disc(centre=(20, 20), radius=5)
    mask[90, 110] = True  # a speck below MIN_AREA
    radii = rs.drop_radii(mask)
    assert len(radii) == 2
    assert sorted(radii) == pytest.approx([5 / 100, 10 / 100], abs=0.006)


def test_per_drop_values_and_reference_band():
    clean = np.full((100, 120, 3), 0.4)
    rainy = clean + 0.15 * _disc(centre=(30, 30), radius=15)[..., None]
    rainy += 0.25 * _disc(centre=(60, 85), radius=15)[..., None]
    stats = rs.pair_stats(rainy, clean)
    assert sorted(stats["per_drop"]["brightening"]) == pytest.approx([0.15, 0.25])
    low, high = rs.reference_band([stats], "coverage")
    assert low == pytest.approx(stats["coverage"] / 1.5)
    assert high == pytest.approx(stats["coverage"] * 1.5)


def test_empty_mask_gives_nan_not_an_error():
    clean = np.full((40, 40, 3), 0.5)
    stats = rs.pair_stats(clean, clean)
    assert np.isnan(stats["brightening"])
    assert stats["drops"] == 0 and stats["coverage"] == 0
