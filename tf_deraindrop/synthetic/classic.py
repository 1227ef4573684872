"""The classic raindrop renderer (kept for ablations): 2-D lens drops over a photo.

The project renders drops with `tf_deraindrop.synthetic.render` (ray-traced
water caps, physical defocus, a camera pipeline). This older, faster model is
kept so its effect on training can be measured against the new one
(`benchmarks/synthetic/bench_transfer.py --renderer classic`).

Image model (docs/architecture.md, section 1): `I = (1 - M) * B + R`. A drop stuck to the glass
is a small plano-convex water lens. The camera is focused on the scene, far
behind the glass, so:

* every drop shows an inverted, shrunk view of a wide patch of the scene
  around it (a wide-angle lens: the rim compresses an even wider field, like a
  fisheye), itself blurred because that view is formed out of the camera's
  focal plane;
* the whole drop layer is out of focus: it is composited over the clean image
  and then blurred as one layer (premultiplied alpha), which gives the soft
  edges of real drops;
* water scatters some ambient light (drops look slightly milky), the steep
  rim refracts light away (a darker ring) and the surface reflects a faint
  highlight of the sky.

Drops are round, elongated (mostly vertical, as water runs down) or merged
blobs of several drops (a smooth union of ellipses); their radii are drawn
log-uniformly so that small drops outnumber large ones, and drops are added
until a drawn fraction of the image is covered.

All lengths are fractions of the image's shorter side, so a 720 x 480 photo
and a 256 x 192 training crop get the same look. Every parameter is a fixed
value or a `(low, high)` range drawn per image (see `DEFAULT_PARAMS`).

Mask rule: the returned mask is the exact footprint of the drops on the glass
(before defocus). Because the defocus kernel is a Gaussian truncated at
`defocus_radius` pixels (reported by `render_raindrops(..., return_info=True)`),
every pixel farther than that from the mask is bit-identical to the clean
image, and pixels of the mask farther than that from its border are changed.

Example:
    >>> from tf_deraindrop.synthetic.classic import render_raindrops
    >>> rainy, mask = render_raindrops(clean, seed=0)  # clean: float RGB in [0, 1]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage

from tf_deraindrop.utils.images import to_float_rgb

# Every parameter: a fixed number or a (low, high) range drawn once per image
# (per drop for the `*_jitter`-scaled appearance values). Lengths are
# fractions of the image's shorter side; at 480 px, radius (0.012, 0.07)
# is 6 to 34 px.
DEFAULT_PARAMS: dict[str, Any] = {
    # Fraction of the image covered by drop footprints.
    "coverage": (0.06, 0.3),
    # Bounds of drop radii; each image draws its own sub-range spanning a
    # factor `radius_spread` (small dense drops in one image, large ones in
    # another), and radii are log-uniform in it, so small drops are common.
    "radius": (0.01, 0.08),
    "radius_spread": 4.0,
    # Probabilities of round, elongated and merged drops.
    "shape_probs": (0.55, 0.25, 0.20),
    # Length / width of elongated drops.
    "aspect": (1.3, 2.2),
    # A drop shows a patch of the scene `zoom` times its own size, inverted.
    "zoom": (2.0, 4.5),
    # Extra compression towards the rim (0: none).
    "fisheye": (0.3, 0.8),
    # Blur of the scene seen through a drop (Gaussian sigma).
    "scene_blur": (0.003, 0.008),
    # Defocus of the whole drop layer (Gaussian sigma).
    "defocus": (0.002, 0.012),
    # Share of scattered ambient light in a drop's colour.
    "haze": (0.03, 0.2),
    # Share of sky light in the lower half of a drop, which (inverted) looks
    # upwards, beyond the top of the frame.
    "sky": (0.1, 0.5),
    # How much brighter than the scene's average that ambient light is.
    "brightness": (0.05, 0.2),
    # Darkening at the rim of a drop (0: none, 1: black rim).
    "rim": (0.25, 0.6),
    # Strength of the highlight (added white).
    "highlight": (0.03, 0.2),
    # Relative per-drop variation of haze, rim and highlight.
    "jitter": 0.3,
    # Stop after this many drops even if the coverage is not reached.
    "max_drops": 3000,
}

MIN_SIDE = 32
_SMOOTH_UNION = 10.0  # sharpness of the smooth union of merged drops
_MIN_RADIUS_PX = 1.5
_TRUNCATE = 3.0  # defocus kernel radius in sigmas


def _draw(rng: np.random.Generator, value: Any) -> float:
    if isinstance(value, (tuple, list)):
        low, high = float(value[0]), float(value[1])
        if high < low:
            raise ValueError(f"range ({low}, {high}) has high < low")
        return float(rng.uniform(low, high)) if high > low else low
    return float(value)


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise TypeError(f"unknown raindrop parameter(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    merged = dict(DEFAULT_PARAMS)
    merged.update(params)
    probs = np.asarray(merged["shape_probs"], dtype=np.float64)
    if probs.shape != (3,) or np.any(probs < 0) or probs.sum() <= 0:
        raise ValueError(f"shape_probs must be 3 non-negative weights, got {merged['shape_probs']}")
    merged["shape_probs"] = probs / probs.sum()
    for name in ("coverage", "radius"):
        value = merged[name]
        values = [value] if np.isscalar(value) else list(value)
        if len(values) not in (1, 2) or (len(values) == 2 and values[1] < values[0]):
            raise ValueError(f"{name} must be a number or a (low, high) range, got {value}")
    radius = merged["radius"]
    if (radius if np.isscalar(radius) else max(radius)) > 0.5:
        raise ValueError(
            f"radius {radius} (fractions of the shorter side) asks for drops larger than "
            "the image; use at most 0.5"
        )
    coverage = merged["coverage"]
    if not 0.0 <= (coverage if np.isscalar(coverage) else max(coverage)) < 1.0:
        raise ValueError(f"coverage must be in [0, 1), got {coverage}")
    return merged


def check_params(**params: Any) -> dict[str, Any]:
    """Validates raindrop parameters (names, ranges) before any rendering.

    Returns:
        The full parameter set, defaults filled in.

    Raises:
        TypeError: an unknown name. ValueError: a bad value.
    """
    return _check_params(params)


def _radius_range(rng: np.random.Generator, p: dict[str, Any], short: int) -> tuple[float, float]:
    """This image's range of drop radii in pixels."""
    bounds = p["radius"]
    low, high = (bounds, bounds) if np.isscalar(bounds) else (float(bounds[0]), float(bounds[1]))
    if not 0 < low <= high:
        raise ValueError(f"radius must be positive with low <= high, got {bounds}")
    spread = max(float(p["radius_spread"]), 1.0)
    if high / low > spread:
        top = math.exp(rng.uniform(math.log(low * spread), math.log(high)))
        low, high = top / spread, top
    return max(low * short, _MIN_RADIUS_PX), max(high * short, _MIN_RADIUS_PX)


def _components(
    rng: np.random.Generator, cy: float, cx: float, r: float, p: dict[str, Any], shape: int
) -> list[tuple[float, float, float, float, float]]:
    """Ellipses `(cy, cx, semi-major, semi-minor, angle)` making one drop."""
    if shape == 0:  # round, slightly irregular
        a = r * rng.uniform(0.92, 1.08)
        b = r * rng.uniform(0.92, 1.08)
        return [(cy, cx, a, b, rng.uniform(0, math.pi))]
    if shape == 1:  # elongated, mostly along the vertical
        aspect = _draw(rng, p["aspect"])
        angle = math.pi / 2 + rng.normal(0.0, 0.35)
        return [(cy, cx, r * math.sqrt(aspect), r / math.sqrt(aspect), angle)]
    comps = [(cy, cx, r, r * rng.uniform(0.85, 1.0), rng.uniform(0, math.pi))]
    for _ in range(int(rng.integers(1, 4))):
        base = comps[int(rng.integers(len(comps)))]
        rj = r * rng.uniform(0.4, 0.85)
        dist = (base[2] + rj) * rng.uniform(0.45, 0.85)
        phi = rng.uniform(0, 2 * math.pi)
        comps.append(
            (
                base[0] + dist * math.sin(phi),
                base[1] + dist * math.cos(phi),
                rj,
                rj * rng.uniform(0.85, 1.0),
                rng.uniform(0, math.pi),
            )
        )
    return comps


def _lens(
    yy: np.ndarray,
    xx: np.ndarray,
    comp: tuple[float, float, float, float, float],
    glint_y: float,
    glint_x: float,
) -> tuple[np.ndarray, ...]:
    """One ellipse of a drop on its bounding box: height `1 - r^2` (positive
    inside), offset `(dy, dx)` from its centre, highlight, vertical position."""
    cy, cx, a, b, angle = comp
    dy = yy - np.float32(cy)
    dx = xx - np.float32(cx)
    cos, sin = math.cos(angle), math.sin(angle)
    along = (cos * dx + sin * dy) / a
    across = (-sin * dx + cos * dy) / b
    h = 1.0 - (along * along + across * across)
    mean_r = math.sqrt(a * b)
    gy = dy / mean_r - glint_y
    gx = dx / mean_r - glint_x
    glint = np.exp(-(gy * gy + gx * gx) / (2 * 0.16**2))
    shape = h.shape
    # Vertical position in the drop, -1 at the top, +1 at the bottom.
    down = np.broadcast_to(dy / mean_r, shape)
    return h, np.broadcast_to(dy, shape), np.broadcast_to(dx, shape), glint, down


@dataclasses.dataclass(frozen=True)
class _Look:
    """The values drawn once per image: how many drops, how large, how they look."""

    coverage: float
    radius_range: tuple[float, float]
    zoom: float
    fisheye: float
    scene_sigma: float
    defocus_sigma: float
    haze: float
    sky: float
    brightness: float
    rim: float
    highlight: float
    jitter: float
    glint: tuple[float, float]


def _draw_look(rng: np.random.Generator, p: dict[str, Any], short: int) -> _Look:
    coverage = _draw(rng, p["coverage"])
    if not 0.0 <= coverage < 1.0:
        raise ValueError(f"coverage must be in [0, 1), got {coverage}")
    radius_range = _radius_range(rng, p, short)
    values = {
        name: _draw(rng, p[name])
        for name in ("zoom", "fisheye", "scene_blur", "defocus", "haze", "sky", "brightness")
    }
    rim, highlight = _draw(rng, p["rim"]), _draw(rng, p["highlight"])
    # One light direction per image, from above: the highlight sits on the
    # upper side of every drop.
    light = rng.uniform(-0.9, 0.9) * math.pi / 2 - math.pi / 2
    return _Look(
        coverage=coverage,
        radius_range=radius_range,
        zoom=values["zoom"],
        fisheye=values["fisheye"],
        scene_sigma=values["scene_blur"] * short,
        defocus_sigma=values["defocus"] * short,
        haze=values["haze"],
        sky=values["sky"],
        brightness=values["brightness"],
        rim=rim,
        highlight=highlight,
        jitter=float(p["jitter"]),
        glint=(0.45 * math.sin(light), 0.45 * math.cos(light)),
    )


def _drop_box(comps, height: int, width: int) -> tuple[int, int, int, int]:
    """The pixel box `(y0, y1, x0, x1)` a drop's components can touch, clipped to the image."""
    reach = max(c[2] for c in comps) * 1.1 + 2.0
    y0 = max(int(math.floor(min(c[0] for c in comps) - reach)), 0)
    y1 = min(int(math.ceil(max(c[0] for c in comps) + reach)) + 1, height)
    x0 = max(int(math.floor(min(c[1] for c in comps) - reach)), 0)
    x1 = min(int(math.ceil(max(c[1] for c in comps) + reach)) + 1, width)
    return y0, y1, x0, x1


def _drop_surface(yy, xx, comps, glint: tuple[float, float]):
    """Height, offsets, highlight and vertical position of one drop (one or several lobes)."""
    if len(comps) == 1:
        return _lens(yy, xx, comps[0], *glint)
    parts = [_lens(yy, xx, comp, *glint) for comp in comps]
    h_all = np.stack([part[0] for part in parts])
    # Smooth union: neighbouring drops merge with a concave neck, each lobe
    # still acting as its own lens through the softmax weights.
    top = h_all.max(axis=0)
    weights = np.exp(_SMOOTH_UNION * (h_all - top))
    total = weights.sum(axis=0)
    h = top + np.log(total) / _SMOOTH_UNION
    weights /= total
    dy, dx, g, down = (sum(w * part[i] for w, part in zip(weights, parts)) for i in range(1, 5))
    return h, dy, dx, g, down


class _DropMaps:
    """Per-pixel maps of the drop layer: footprint, refraction source, shading, glint, scatter."""

    def __init__(self, height: int, width: int):
        self.footprint = np.zeros((height, width), dtype=bool)
        self.src_y = np.zeros((height, width), dtype=np.float32)
        self.src_x = np.zeros((height, width), dtype=np.float32)
        self.shade = np.ones((height, width), dtype=np.float32)
        self.glint = np.zeros((height, width), dtype=np.float32)
        self.scatter = np.zeros((height, width), dtype=np.float32)

    def add(self, rng: np.random.Generator, comps, look: _Look) -> int:
        """Paints one drop; returns how many pixels it newly covers."""
        height, width = self.footprint.shape
        y0, y1, x0, x1 = _drop_box(comps, height, width)
        if y1 <= y0 or x1 <= x0:
            return 0
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        xx = np.arange(x0, x1, dtype=np.float32)[None, :]
        h, dy, dx, g, down = _drop_surface(yy, xx, comps, look.glint)
        inside = h > 0
        if not inside.any():
            return 0
        thickness = np.sqrt(np.clip(h, 0.0, 1.0))  # spherical-cap profile
        # Inverted view, `zoom` times wider, compressed further at the rim.
        spread = 1.0 + look.zoom * np.maximum(thickness, 0.15) ** (-look.fisheye)
        jit = rng.uniform(1.0 - look.jitter, 1.0 + look.jitter, size=3)

        box = (slice(y0, y1), slice(x0, x1))
        covered = int(np.count_nonzero(inside & ~self.footprint[box]))
        self.footprint[box] |= inside
        self.src_y[box] = np.where(inside, yy - spread * dy, self.src_y[box])
        self.src_x[box] = np.where(inside, xx - spread * dx, self.src_x[box])
        darkening = min(look.rim * jit[0], 0.95) * (1.0 - thickness) ** 1.5
        self.shade[box] = np.where(inside, 1.0 - darkening, self.shade[box])
        self.glint[box] = np.where(inside, look.highlight * jit[1] * g, self.glint[box])
        skylight = look.sky * np.clip(0.5 + 0.8 * down, 0.0, 1.0)
        scattered = np.minimum(look.haze * jit[2] + skylight, 0.95)
        self.scatter[box] = np.where(inside, scattered, self.scatter[box])
        return covered


def _scatter_drops(rng, p: dict[str, Any], look: _Look, height: int, width: int):
    """Drops at random until the coverage is reached; returns the maps and the drop count."""
    maps = _DropMaps(height, width)
    target = look.coverage * height * width
    covered = drops = 0
    log_lo, log_hi = (math.log(r) for r in look.radius_range)
    while covered < target and drops < int(p["max_drops"]):
        r = math.exp(rng.uniform(log_lo, log_hi))
        cy = rng.uniform(-0.3 * r, height - 1 + 0.3 * r)
        cx = rng.uniform(-0.3 * r, width - 1 + 0.3 * r)
        shape = int(rng.choice(3, p=p["shape_probs"]))
        covered += maps.add(rng, _components(rng, cy, cx, r, p, shape), look)
        drops += 1
    return maps, drops, covered


def _refracted_colour(image: np.ndarray, maps: _DropMaps, look: _Look, ys, xs) -> np.ndarray:
    """The colour seen through the drops at `(ys, xs)`: refracted scene, scatter, shade, glint."""
    height, width = image.shape[:2]
    coords = np.stack([maps.src_y[ys, xs], maps.src_x[ys, xs]])
    if look.scene_sigma >= 1.0 and height >= 2 * MIN_SIDE and width >= 2 * MIN_SIDE:
        # The view through a drop is shrunk and blurred anyway: blur (and
        # sample) it at half resolution, 8 times cheaper. A 2 x 2 mean is
        # itself a blur of sigma 0.5 px.
        h2, w2 = height // 2, width // 2
        scene = image[: 2 * h2, : 2 * w2].reshape(h2, 2, w2, 2, 3).mean(axis=(1, 3))
        sigma = math.sqrt(max(look.scene_sigma**2 - 0.25, 0.01)) / 2
        coords = (coords - 0.5) / 2
    else:
        scene, sigma = image, look.scene_sigma
    if sigma > 0:
        scene = ndimage.gaussian_filter(scene, sigma=(sigma, sigma, 0.0), mode="nearest")
    # Light refracted from outside the frame comes from nearest-edge content
    # (mostly sky above), as a drop's field of view exceeds the camera's.
    scene = np.ascontiguousarray(np.moveaxis(scene, -1, 0))
    refracted = np.stack(
        [ndimage.map_coordinates(channel, coords, order=1, mode="nearest") for channel in scene],
        axis=-1,
    )
    top_strip = image[: max(1, height // 8)].reshape(-1, 3).mean(axis=0)
    mean = image.reshape(-1, 3).mean(axis=0)
    ambient = np.clip(0.5 * mean + 0.5 * top_strip + look.brightness, 0, 1)
    k = maps.scatter[ys, xs, None]
    shade, glint = maps.shade[ys, xs, None], maps.glint[ys, xs, None]
    return ((1.0 - k) * refracted + k * ambient) * shade + glint


def _composite(image: np.ndarray, maps: _DropMaps, look: _Look, radius: int) -> np.ndarray:
    """The drop layer over the image, defocused as a whole."""
    height, width = image.shape[:2]
    ys, xs = np.nonzero(maps.footprint)
    layer = np.zeros((height, width, 3), dtype=np.float32)
    layer[ys, xs] = np.clip(_refracted_colour(image, maps, look, ys, xs), 0.0, 1.0)
    alpha = maps.footprint.astype(np.float32)
    if radius > 0:
        # Defocus of the drop layer as a whole: blur the premultiplied layer
        # and its coverage with the same truncated kernel.
        sigma = look.defocus_sigma
        alpha = ndimage.gaussian_filter(alpha, sigma, mode="reflect", radius=radius)
        layer = ndimage.gaussian_filter(
            layer, (sigma, sigma, 0.0), mode="reflect", radius=(radius, radius, 0)
        )
    touched = alpha > 0
    # Where the layer is absent the image is kept as is, bit for bit.
    layer += image * (1.0 - alpha[..., None])
    np.clip(layer, 0.0, 1.0, out=layer)
    return np.where(touched[..., None], layer, image).astype(np.float32, copy=False)


def render_raindrops(
    clean: np.ndarray,
    seed: int | np.random.Generator | None = None,
    return_info: bool = False,
    **params: Any,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Renders adherent raindrops over a clean image.

    Args:
        clean: clean image, float RGB in [0, 1] `(H, W, 3)`, or uint8/uint16,
            gray or RGBA (converted). The shorter side must be at least 32 px.
        seed: an int, a `numpy.random.Generator`, or None (random). The same
            int gives the same bytes.
        return_info: also return a dict of the values drawn (coverage, number
            of drops, defocus sigma and kernel radius in pixels, ...).
        **params: overrides of `DEFAULT_PARAMS` (a number, or a `(low, high)`
            range drawn per image).

    Returns:
        `(rainy, mask)`: rainy float32 RGB `(H, W, 3)` in [0, 1] and the
        footprint of the drops, bool `(H, W)`; with `return_info`, also the
        info dict.

    Raises:
        ValueError: the image is too small for drops, or a bad parameter.
        TypeError: an unknown parameter name.

    Example:
        >>> rainy, mask = render_raindrops(skimage.data.astronaut(), seed=3, coverage=0.2)
    """
    p = _check_params(params)
    image = to_float_rgb(clean)
    height, width = image.shape[:2]
    short = min(height, width)
    if short < MIN_SIDE:
        raise ValueError(
            f"image of {width} x {height} px is too small for raindrops "
            f"(the shorter side must be at least {MIN_SIDE} px)."
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    look = _draw_look(rng, p, short)
    maps, drops, covered = _scatter_drops(rng, p, look, height, width)
    sigma = look.defocus_sigma
    radius = int(_TRUNCATE * sigma + 0.5) if sigma > 0.3 else 0
    info = {
        "coverage_target": look.coverage,
        "coverage": float(maps.footprint.mean()),
        "drops": drops,
        "defocus_sigma_px": sigma,
        "defocus_radius": radius,
        "scene_blur_px": look.scene_sigma,
        "zoom": look.zoom,
    }
    rainy = image.copy() if covered == 0 else _composite(image, maps, look, radius)
    return (rainy, maps.footprint, info) if return_info else (rainy, maps.footprint)
