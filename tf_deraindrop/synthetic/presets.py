"""Camera/glass set-ups (presets) and the validation of rendering parameters.

Every parameter is a number or a `(low, high)` range drawn once per image.
Physical units: metres for distances, millimetres for the lens, the sensor
and drop radii, degrees for angles; light levels are linear.

* `raindrop-dataset` (default): Qian et al.'s set-up, a glass pane 2-5 cm in
  front of a DSLR focused on the street; drops are large, soft, bright,
  see-through smudges.
* `dashcam`: a small-sensor wide-angle camera a few centimetres behind a
  windscreen tilted ~60 degrees: defocus grows towards the top, where the
  glass is nearer; drops streak down the glass.
* `phone`: a phone camera (tiny aperture) behind a window 10-40 cm away:
  sharper, smaller drops (Hao et al.'s 20-40 cm range).

Example:
    >>> params = check_params(preset="phone", coverage=0.1)
    >>> params["glass_distance"]
    (0.1, 0.4)
"""

from __future__ import annotations

from typing import Any

_COMMON: dict[str, Any] = {
    "glass_tilt": (-8.0, 8.0),  # degrees; positive: top of the glass leans towards the camera
    "focus_distance": (6.0, 20.0),  # metres
    "contact_angle": (35.0, 65.0),  # degrees, water on glass
    "size_exponent": 2.6,  # drop radii p(a) ~ a**-exponent
    "irregularity": (0.05, 0.2),  # outline wobble
    "merge_prob": 0.25,
    "streak_prob": 0.15,
    "streak_stretch": (1.4, 2.6),
    "trail_prob": 0.5,  # share of streaks that leave a trail
    "trail_length": (2.0, 6.0),  # in drop radii
    "scene_blur": (0.004, 0.01),  # blur of the view through a drop, fraction of the short side
    "haze": (0.03, 0.15),  # share of scattered ambient light in a drop (dirty water is milky)
    "sky_luminance": (0.6, 1.0),  # linear luminance of the sky the drops gather
    "ground_gain": (0.6, 1.0),  # ground below the frame, relative to the bottom rows
    "transmission": 0.95,  # two water-air faces (Fresnel)
    "tir_level": 0.15,  # totally reflected rim, relative to the ambient light
    "exposure_jitter": 0.03,  # log gain
    "white_balance_jitter": 0.015,
    "water_film": (0.0, 0.04),
    "noise": (0.0005, 0.003),
    "jpeg_quality": (88, 97),  # 0: no JPEG
    "mask_alpha": 0.3,  # mask: defocused drop coverage at least this
    "max_drops": 800,
}

PRESETS: dict[str, dict[str, Any]] = {
    "raindrop-dataset": {
        **_COMMON,
        "glass_distance": (0.02, 0.05),
        "focal_length": (24.0, 40.0),
        "sensor_width": 23.5,
        "f_number": (6.0, 11.0),
        "drop_radius": (0.4, 3.5),  # mm on the glass
        "coverage": (0.12, 0.28),
    },
    "dashcam": {
        **_COMMON,
        "glass_distance": (0.03, 0.08),
        "glass_tilt": (40.0, 52.0),
        "focal_length": (3.2, 4.0),
        "sensor_width": 5.6,
        "f_number": (1.6, 2.2),
        "focus_distance": (10.0, 30.0),
        "drop_radius": (0.3, 3.0),
        "coverage": (0.08, 0.25),
        "streak_prob": 0.35,
        "noise": (0.002, 0.008),
        "jpeg_quality": (70, 90),
    },
    "phone": {
        **_COMMON,
        "glass_distance": (0.1, 0.4),
        "focal_length": (4.0, 6.0),
        "sensor_width": 6.2,
        "f_number": (1.6, 2.2),
        "drop_radius": (0.4, 4.0),
        "coverage": (0.06, 0.2),
        "noise": (0.001, 0.005),
    },
}

DEFAULT_PRESET = "raindrop-dataset"

_POSITIVE = (
    "glass_distance",
    "focal_length",
    "sensor_width",
    "f_number",
    "focus_distance",
    "drop_radius",
    "streak_stretch",
    "trail_length",
    "sky_luminance",
    "max_drops",
)
_NON_NEGATIVE = (
    "scene_blur",
    "haze",
    "ground_gain",
    "tir_level",
    "exposure_jitter",
    "white_balance_jitter",
    "water_film",
    "noise",
    "irregularity",
    "size_exponent",
)
_UNIT = ("merge_prob", "streak_prob", "trail_prob", "transmission", "mask_alpha", "water_film")


def _ends(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) range, got {value!r}")
        low, high = float(value[0]), float(value[1])
        if high < low:
            raise ValueError(f"{name} range ({low}, {high}) has high < low")
        return low, high
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a (low, high) range, got {value!r}") from None
    return number, number


def _check_values(p: dict[str, Any]) -> None:
    for name in _POSITIVE:
        if _ends(name, p[name])[0] <= 0:
            raise ValueError(f"{name} must be positive, got {p[name]!r}")
    for name in _NON_NEGATIVE:
        if _ends(name, p[name])[0] < 0:
            raise ValueError(f"{name} must not be negative, got {p[name]!r}")
    for name in _UNIT:
        low, high = _ends(name, p[name])
        if low < 0 or high > 1:
            raise ValueError(f"{name} must be within [0, 1], got {p[name]!r}")
    low, high = _ends("contact_angle", p["contact_angle"])
    if low <= 0 or high >= 90:
        raise ValueError(
            f"contact_angle must be within (0, 90) degrees, got {p['contact_angle']!r}"
        )
    low, high = _ends("glass_tilt", p["glass_tilt"])
    if low <= -75 or high >= 75:
        raise ValueError(f"glass_tilt must be within (-75, 75) degrees, got {p['glass_tilt']!r}")
    low, high = _ends("coverage", p["coverage"])
    if low < 0 or high >= 1:
        raise ValueError(f"coverage must be within [0, 1), got {p['coverage']!r}")
    if (
        _ends("focus_distance", p["focus_distance"])[0]
        <= _ends("glass_distance", p["glass_distance"])[1]
    ):
        raise ValueError(
            "focus_distance must be beyond glass_distance (the camera focuses past it)"
        )
    low, high = _ends("jpeg_quality", p["jpeg_quality"])
    if low < 0 or high > 100 or (low == 0 < high):
        raise ValueError(
            f"jpeg_quality must be 0 (off) or within [1, 100], got {p['jpeg_quality']!r}"
        )


def check_params(preset: str = DEFAULT_PRESET, **params: Any) -> dict[str, Any]:
    """Validates a preset name and parameter overrides before any rendering.

    Args:
        preset: one of `PRESETS` (`raindrop-dataset`, `dashcam`, `phone`).
        **params: overrides of the preset's values (numbers or `(low, high)`).

    Returns:
        The full parameter set: the preset's values with the overrides.

    Raises:
        ValueError: an unknown preset (the message lists them) or a value out
            of its physical range (the message names the parameter).
        TypeError: an unknown parameter name.

    Example:
        >>> check_params(preset="dashcam", contact_angle=95)  # doctest: +SKIP
        ValueError: contact_angle must be within (0, 90) degrees, got 95
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    merged = dict(PRESETS[preset])
    unknown = sorted(set(params) - set(merged))
    if unknown:
        raise TypeError(f"unknown raindrop parameter(s) {unknown}; known: {sorted(merged)}")
    merged.update(params)
    _check_values(merged)
    return merged
