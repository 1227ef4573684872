"""The published PSNR/SSIM protocol and its in-graph twin."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tf_deraindrop.metrics import psnr, psnr_y, psnr_y_tf, ssim_y, ssim_y_tf, y_channel
from tf_deraindrop.utils.images import to_uint8


def _noisy_pair(seed, shape=(37, 45, 3), sigma=0.08):
    rng = np.random.default_rng(seed)
    # Smooth content plus noise: SSIM well away from both 0 and 1.
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = 0.5 + 0.4 * np.sin(xx[..., None] / 5.0 + np.arange(3)) * np.cos(yy[..., None] / 7.0)
    clean = np.clip(base, 0, 1).astype(np.float32)
    output = np.clip(clean + rng.normal(0, sigma, shape), 0, 1).astype(np.float32)
    return output, clean


def test_real_pair_matches_published_input_numbers(raindrop_pairs_dir):
    rainy = np.asarray(Image.open(raindrop_pairs_dir / "data" / "0_rain.png").convert("RGB"))
    clean = np.asarray(Image.open(raindrop_pairs_dir / "gt" / "0_clean.png").convert("RGB"))
    assert round(psnr_y(rainy, clean), 2) == 20.80
    assert round(ssim_y(rainy, clean), 4) == 0.8092


def test_y_channel_is_bt601_rounded():
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    # 0.299 * 255 = 76.245, 0.587 * 255 = 149.685, 0.114 * 255 = 29.07.
    np.testing.assert_array_equal(y_channel(pixels), [[76, 150, 29, 255]])


def test_psnr_of_constant_offset_is_exact():
    gray = np.random.default_rng(0).integers(10, 240, (16, 20, 1), dtype=np.uint8)
    clean = np.repeat(gray, 3, axis=-1)
    # Luma weights sum to 1: a gray pixel's Y is its value, an offset d moves it by d.
    for d in (1, 3, 10):
        assert psnr_y(clean + np.uint8(d), clean) == pytest.approx(20 * math.log10(255 / d))


def test_plain_psnr_clips_to_the_peak_and_needs_no_uint8():
    rng = np.random.default_rng(2)
    a = rng.random((6, 10, 3), dtype=np.float32)
    for d in (0.01, 0.1):
        # Shifted inside [0, 1] by d: the MSE is d^2 exactly (up to float32 rounding).
        b = np.clip(a, d, 1.0) - d
        assert psnr(np.clip(a, d, 1.0), b) == pytest.approx(20 * math.log10(1 / d), abs=1e-3)
    assert psnr(a, a) == math.inf
    # Values outside [0, peak] count as the peak: 2.0 and 1.0 are equal.
    assert psnr(np.full((4, 4), 2.0), np.ones((4, 4))) == math.inf
    assert psnr(np.zeros((4, 4)), np.full((4, 4), 51.0), peak=255.0) == pytest.approx(
        20 * math.log10(5.0)
    )


def test_only_multiples_of_four_are_measured():
    clean = np.random.default_rng(1).integers(0, 255, (38, 46, 3), dtype=np.uint8)
    output = clean.copy()
    output[36:, :] = 0  # rows 36, 37 and columns 44, 45 fall outside the crop
    output[:, 44:] = 0
    assert psnr_y(output, clean) == float("inf")
    assert ssim_y(output, clean) == 1.0
    output[35, 10] = 0
    assert psnr_y(output, clean) < 60


def test_chroma_only_change_is_not_measured():
    clean = np.full((12, 12, 3), 100, np.uint8)
    output = clean.copy()
    # +10 red and -5 green: Y moves by 2.99 - 2.935 = 0.055, rounds back to 100.
    output[..., 0] += 10
    output[..., 1] -= 5
    assert psnr_y(output, clean) == float("inf")


def test_ssim_falls_with_noise_and_is_symmetric():
    out_small, clean = _noisy_pair(0, sigma=0.02)
    out_large, _ = _noisy_pair(0, sigma=0.2)
    small = ssim_y(to_uint8(out_small), to_uint8(clean))
    large = ssim_y(to_uint8(out_large), to_uint8(clean))
    assert 0.0 < large < small < 1.0
    assert ssim_y(to_uint8(clean), to_uint8(out_small)) == pytest.approx(small)


def test_bad_arguments_are_clear():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        psnr_y(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="differ in size"):
        ssim_y(a, np.zeros((16, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        psnr_y(a[..., 0], a[..., 0])
    with pytest.raises(ValueError, match="too small"):
        ssim_y(a[:5], a[:5])


def test_in_graph_metrics_agree_with_protocol():
    pairs = [_noisy_pair(s, sigma=sig) for s, sig in ((0, 0.02), (1, 0.1), (2, 0.3))]
    output = np.stack([p[0] for p in pairs])
    clean = np.stack([p[1] for p in pairs])
    psnr = psnr_y_tf(output, clean).numpy()
    ssim = ssim_y_tf(output, clean).numpy()
    assert psnr.shape == ssim.shape == (3,)
    for i in range(3):
        out8, clean8 = to_uint8(output[i]), to_uint8(clean[i])
        assert psnr[i] == pytest.approx(psnr_y(out8, clean8), abs=1e-3)
        assert ssim[i] == pytest.approx(ssim_y(out8, clean8), abs=1e-5)


def test_in_graph_metrics_on_real_pair(raindrop_pairs_dir):
    rainy = np.asarray(Image.open(raindrop_pairs_dir / "data" / "0_rain.png").convert("RGB"))
    clean = np.asarray(Image.open(raindrop_pairs_dir / "gt" / "0_clean.png").convert("RGB"))
    crop = (slice(100, 324), slice(200, 424))
    args = (rainy[crop][None] / 255.0, clean[crop][None] / 255.0)
    assert float(psnr_y_tf(*args)[0]) == pytest.approx(psnr_y(rainy[crop], clean[crop]), abs=1e-3)
    assert float(ssim_y_tf(*args)[0]) == pytest.approx(ssim_y(rainy[crop], clean[crop]), abs=1e-5)


def test_in_graph_metrics_identical_images():
    _, clean = _noisy_pair(3)
    batch = clean[None]
    assert np.isinf(psnr_y_tf(batch, batch).numpy()[0])
    assert ssim_y_tf(batch, batch).numpy()[0] == pytest.approx(1.0, abs=1e-6)
