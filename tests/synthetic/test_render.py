"""The physically based raindrop renderer: determinism, outputs, mask, validation, presets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tf_deraindrop.synthetic import optics
from tf_deraindrop.synthetic.presets import PRESETS, check_params
from tf_deraindrop.synthetic.render import render_raindrops


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    # A smooth gradient with some texture: cheap, and drops change it visibly.
    yy, xx = np.mgrid[:96, :144] / 96.0
    rng = np.random.default_rng(0)
    image = np.stack([0.3 + 0.4 * yy, 0.5 - 0.2 * xx / 1.5, 0.4 + 0.1 * np.sin(9 * xx)], -1)
    return np.clip(image + 0.03 * rng.standard_normal(image.shape), 0, 1).astype(np.float32)


def test_same_seed_same_bytes_other_seed_differs(clean):
    a, mask_a = render_raindrops(clean, seed=5)
    b, mask_b = render_raindrops(clean, seed=5)
    c, _ = render_raindrops(clean, seed=6)
    assert a.tobytes() == b.tobytes() and mask_a.tobytes() == mask_b.tobytes()
    assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_shapes_dtypes_and_range(clean, preset):
    rainy, mask = render_raindrops(clean, seed=1, preset=preset)
    assert rainy.shape == clean.shape and rainy.dtype == np.float32
    assert mask.shape == clean.shape[:2] and mask.dtype == bool
    assert rainy.min() >= 0.0 and rainy.max() <= 1.0
    assert mask.any()


def test_uint8_input_is_accepted(clean):
    rainy, mask = render_raindrops((clean * 255).astype(np.uint8), seed=2)
    assert rainy.dtype == np.float32 and mask.dtype == bool


def test_mask_marks_where_the_drops_change_the_image(clean):
    # Without the camera pipeline only the drops change the frame.
    quiet = dict(noise=0, jpeg_quality=0, exposure_jitter=0, white_balance_jitter=0, water_film=0)
    rainy, mask, info = render_raindrops(clean, seed=3, return_info=True, **quiet)
    diff = np.abs(rainy - clean).max(axis=-1)
    assert diff[mask].mean() > 2.5 * diff[~mask].mean()  # the halo below mask_alpha is faint
    # The mask is where the defocused drops cover at least `mask_alpha`: strong
    # changes lie in it, the faint halo of the defocus disk outside it.
    strong = diff >= 0.1
    assert strong.any() and mask[strong].mean() > 0.9
    assert info["drops"] > 0


def test_drops_brighten_and_keep_some_detail(clean):
    rainy, mask = render_raindrops(clean, seed=4, noise=0, jpeg_quality=0)
    luma = np.array([0.299, 0.587, 0.114])
    assert ((rainy - clean) @ luma)[mask].mean() > 0.0


def test_big_drop_settings_reach_a_fifth_of_the_short_side():
    image = np.full((240, 360, 3), 0.4, np.float32)
    image[:, :, 0] = np.linspace(0.2, 0.8, 360)
    _, mask = render_raindrops(
        image,
        seed=0,
        drop_radius=(5.0, 6.0),
        glass_distance=0.03,
        focal_length=30.0,
        coverage=0.3,
        merge_prob=0.0,
        streak_prob=0.0,
    )
    labels, n = ndimage.label(mask)
    largest = np.bincount(labels.ravel())[1:].max()
    assert np.sqrt(largest / np.pi) / 240 >= 0.2


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("glass_distance", -0.03, "glass_distance must be positive"),
        ("f_number", 0.0, "f_number must be positive"),
        ("focal_length", (-1.0, 5.0), "focal_length must be positive"),
        ("contact_angle", 95.0, "contact_angle must be within (0, 90)"),
        ("contact_angle", (0.0, 40.0), "contact_angle must be within (0, 90)"),
        ("coverage", 1.2, "coverage must be within [0, 1)"),
        ("merge_prob", 1.5, "merge_prob must be within [0, 1]"),
        ("drop_radius", (3.0, 1.0), "drop_radius range"),
        ("jpeg_quality", 150, "jpeg_quality"),
    ],
)
def test_out_of_range_params_name_the_parameter(clean, name, value, words):
    with pytest.raises(
        ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        render_raindrops(clean, seed=0, **{name: value})


def test_unknown_preset_lists_the_presets(clean):
    with pytest.raises(ValueError) as err:
        render_raindrops(clean, seed=0, preset="snorkel")
    for name in PRESETS:
        assert name in str(err.value)


def test_unknown_parameter_and_small_image(clean):
    with pytest.raises(TypeError, match="unknown raindrop parameter"):
        render_raindrops(clean, seed=0, zoom=3)
    with pytest.raises(ValueError, match="too small"):
        render_raindrops(np.zeros((20, 40, 3), np.float32), seed=0)


def test_presets_and_default():
    assert set(PRESETS) == {"raindrop-dataset", "dashcam", "phone"}
    assert check_params() == check_params(preset="raindrop-dataset")
    assert check_params(preset="phone", coverage=0.1)["coverage"] == 0.1


def test_tilted_glass_varies_the_defocus_down_the_frame():
    geo = optics.Geometry.make(
        96, 144, distance=0.05, tilt=55.0, focal_mm=3.5, sensor_mm=5.6, f_number=1.8, focus=15.0
    )
    blur = geo.blur_radius_px()
    # The top of a windscreen is nearer the camera: more defocus there.
    assert blur[0].mean() > 1.3 * blur[-1].mean()


def test_refraction_follows_snell():
    incident = np.array([[np.sin(0.5), 0.0, np.cos(0.5)]])
    out, tir = optics._refract(incident, np.array([[0.0, 0.0, -1.0]]), 1.0 / 1.333)
    assert np.sin(np.arccos(out[0, 2])) == pytest.approx(np.sin(0.5) / 1.333)
    assert not tir.any()
    _, tir = optics._refract(
        incident * 0 + [[np.sin(1.2), 0, np.cos(1.2)]], np.array([[0.0, 0.0, -1.0]]), 1.333
    )
    assert tir.all()  # beyond the critical angle of water
