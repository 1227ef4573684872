"""Physically based raindrops: ray-traced water caps on defocused glass, then a camera.

The steps, each in its own module:

1. `presets`: the camera/glass set-up and the drop statistics, drawn per image.
2. `drops`: drops placed on the glass (power-law radii, irregular outlines,
   merged lobes, streaks and trails) until a drawn share of the frame is wet;
   they add into one height map (metres) over the pixels.
3. `optics`: every wet pixel's camera ray is refracted into the water and out
   of its curved surface (Snell); the outgoing ray is looked up in the frame
   (blurred: a drop minifies) or, when it leaves the frame, in an environment
   of sky and ground (`camera.Environment`); where the surface reflects it
   totally the drop is dark (the light comes from inside the car or room).
4. The drop layer (premultiplied colour and coverage) is blurred with the
   glass's thin-lens defocus disk, whose radius follows the glass depth
   across a tilted pane, and composited over the scene in linear light.
5. `camera.pipeline`: exposure/white-balance jitter, a faint water film,
   noise and JPEG, on the rainy frame only.

Mask rule: the mask is where the defocused drop coverage reaches `mask_alpha`
(0.3 by default): the region a drop visibly covers, not its sharp footprint
on the glass (which the camera never sees).

Example:
    >>> from tf_deraindrop.synthetic.render import render_raindrops
    >>> rainy, mask = render_raindrops(clean, seed=0)  # clean: float RGB in [0, 1]
    >>> rainy, mask = render_raindrops(clean, seed=0, preset="dashcam", coverage=0.1)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from tf_deraindrop.synthetic import camera, drops, optics
from tf_deraindrop.synthetic.presets import DEFAULT_PRESET, PRESETS, check_params
from tf_deraindrop.utils.images import to_float_rgb

__all__ = ["MIN_SIDE", "PRESETS", "check_params", "render_raindrops"]

MIN_SIDE = 32
_EDGE_PX = 8.0  # the frame's samples fade into the environment over this band


def _geometry(rng: np.random.Generator, p: dict[str, Any], height: int, width: int):
    d = drops.draw
    return optics.Geometry.make(
        height,
        width,
        distance=d(rng, p["glass_distance"]),
        tilt=d(rng, p["glass_tilt"]),
        focal_mm=d(rng, p["focal_length"]),
        sensor_mm=d(rng, p["sensor_width"]),
        f_number=d(rng, p["f_number"]),
        focus=d(rng, p["focus_distance"]),
    )


def _place_drops(rng: np.random.Generator, p: dict[str, Any], geo: optics.Geometry):
    """Drops at random until the drawn coverage; returns the height map and the drop count."""
    height, width = geo.height, geo.width
    heights = np.zeros((height, width))
    wet = np.zeros((height, width), dtype=bool)
    target = drops.draw(rng, p["coverage"]) * height * width
    low, high = (float(v) * 1e-3 for v in drops.span(p["drop_radius"]))
    sizes = drops.radii(rng, low, high, float(p["size_exponent"]), int(p["max_drops"]))
    covered = count = 0
    for radius in sizes:
        if covered >= target:
            break
        row, col = int(rng.integers(height)), int(rng.integers(width))
        drop = drops.Drop.draw(
            rng, geo.glass_xy[0, row, col], geo.glass_xy[1, row, col], float(radius), p
        )
        box = _pixel_box(geo, drop, row, col)
        if box is None:
            continue
        h = drop.height(geo.glass_xy[0][box], geo.glass_xy[1][box])
        new = (h > 0) & ~wet[box]
        covered += int(np.count_nonzero(new))
        heights[box] = np.maximum(heights[box], h)
        wet[box] |= h > 0
        count += 1
    return heights, count


def _pixel_box(geo: optics.Geometry, drop: drops.Drop, row: int, col: int):
    """The rows/cols a drop can touch (from its glass reach and the local scale)."""
    x0, x1, y0, y1 = drop.reach()
    lb = drop.lobes[0]
    px_per_m = geo.f_px / geo.glass_z[row, col] * 1.3  # margin: the scale varies
    r0 = int(math.floor(row + (y0 - lb.cy) * px_per_m)) - 2
    r1 = int(math.ceil(row + (y1 - lb.cy) * px_per_m)) + 3
    c0 = int(math.floor(col + (x0 - lb.cx) * px_per_m)) - 2
    c1 = int(math.ceil(col + (x1 - lb.cx) * px_per_m)) + 3
    r0, r1 = max(r0, 0), min(r1, geo.height)
    c0, c1 = max(c0, 0), min(c1, geo.width)
    if r1 <= r0 or c1 <= c0:
        return None
    return slice(r0, r1), slice(c0, c1)


def _scene(linear: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
    """The frame as seen minified through drops: blurred, at half size when that is cheap."""
    if sigma >= 1.5 and min(linear.shape[:2]) >= 2 * MIN_SIDE:
        h2, w2 = linear.shape[0] // 2, linear.shape[1] // 2
        small = linear[: 2 * h2, : 2 * w2].reshape(h2, 2, w2, 2, 3).mean(axis=(1, 3))
        return ndimage.gaussian_filter(small, (sigma / 2, sigma / 2, 0), mode="nearest"), 2.0
    return ndimage.gaussian_filter(linear, (sigma, sigma, 0), mode="nearest"), 1.0


def _drop_colour(rng, p, geo, linear, heights, box, env):
    """Linear colour `(n, 3)` of the `n` wet pixels of `box` seen through the water, and
    the bool map of those pixels in the box."""
    directions, tir, wet = optics.trace_drops(geo, heights, box)
    rows, cols, forward = optics.directions_to_pixels(geo, directions, box, wet)
    scene, scale = _scene(linear, drops.draw(rng, p["scene_blur"]) * min(linear.shape[:2]))
    coords = [(rows - (scale - 1) / 2) / scale, (cols - (scale - 1) / 2) / scale]
    seen = np.stack(
        [ndimage.map_coordinates(scene[..., c], coords, order=1, mode="nearest") for c in range(3)],
        axis=-1,
    )
    inside = np.minimum(
        np.minimum(rows, geo.height - 1 - rows), np.minimum(cols, geo.width - 1 - cols)
    )
    weight = np.clip(inside / _EDGE_PX, 0.0, 1.0) * forward
    colour = weight[..., None] * seen + (1 - weight[..., None]) * env.lookup(directions)
    haze = drops.draw(rng, p["haze"])
    colour = (1 - haze) * colour + haze * env.ambient
    colour = np.where(tir[..., None], float(p["tir_level"]) * env.ambient, colour)
    return colour * float(p["transmission"]), wet


def _composite(rng, p, geo: optics.Geometry, linear: np.ndarray, heights: np.ndarray):
    """The defocused drop layer over the linear scene; returns the frame and the coverage."""
    rows = np.flatnonzero(heights.any(axis=1))
    cols = np.flatnonzero(heights.any(axis=0))
    if rows.size == 0:
        return linear, np.zeros(heights.shape, dtype=np.float32)
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    env = camera.Environment(
        linear,
        geo.f_px,
        sky=drops.draw(rng, p["sky_luminance"]),
        ground=drops.draw(rng, p["ground_gain"]),
    )
    layer = np.zeros(heights.shape + (4,), dtype=np.float32)
    # One pixel of anti-aliasing at the rim: the height there is ~tan(theta) px.
    rim = geo.metres_per_px() * math.tan(math.radians(np.mean(drops.span(p["contact_angle"]))))
    alpha = np.clip(heights[box] / rim, 0.0, 1.0)
    colour, wet = _drop_colour(rng, p, geo, linear, heights, box, env)
    rgb = np.zeros(alpha.shape + (3,), dtype=np.float32)
    rgb[wet] = colour * alpha[wet][:, None]
    layer[box + (slice(0, 3),)] = rgb
    layer[box + (3,)] = alpha
    blurred = optics.defocus(layer, geo.blur_radius_px())
    coverage = np.clip(blurred[..., 3], 0.0, 1.0)
    out = linear * (1.0 - coverage[..., None]) + np.maximum(blurred[..., :3], 0.0)
    return out, coverage.astype(np.float32)


def render_raindrops(
    clean: np.ndarray,
    seed: int | np.random.Generator | None = None,
    preset: str = DEFAULT_PRESET,
    return_info: bool = False,
    **params: Any,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Renders raindrops on a glass pane in front of the camera over a clean photo.

    Args:
        clean: clean image, float RGB in [0, 1] `(H, W, 3)`, or uint8/uint16,
            gray or RGBA (converted). The shorter side must be at least 32 px.
        seed: an int, a `numpy.random.Generator`, or None (random). The same
            int gives the same bytes.
        preset: the camera/glass set-up, one of `PRESETS`.
        return_info: also return a dict of drawn values (drops, defocus radii, ...).
        **params: overrides of the preset's values (see `presets.PRESETS`).

    Returns:
        `(rainy, mask)`: rainy float32 RGB `(H, W, 3)` in [0, 1] and a bool
        `(H, W)` mask (defocused drop coverage >= `mask_alpha`); with
        `return_info`, also the info dict.

    Raises:
        ValueError: a too small image, an unknown preset, or a value out of its
            physical range (the message names the parameter).
        TypeError: an unknown parameter name.

    Example:
        >>> rainy, mask = render_raindrops(skimage.data.astronaut(), seed=3, preset="phone")
    """
    p = check_params(preset, **params)
    image = to_float_rgb(clean)
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(
            f"image of {width} x {height} px is too small for raindrops "
            f"(the shorter side must be at least {MIN_SIDE} px)."
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    geo = _geometry(rng, p, height, width)
    heights, count = _place_drops(rng, p, geo)
    linear = camera.srgb_to_linear(image).astype(np.float32)
    linear, coverage = _composite(rng, p, geo, linear, heights)
    look = camera.draw_camera_look(rng, p, drops.draw)
    rainy = camera.pipeline(linear, rng, look)
    mask = coverage >= float(p["mask_alpha"])
    if not return_info:
        return rainy, mask
    blur = geo.blur_radius_px()
    info = {
        "preset": preset,
        "drops": count,
        "wet_fraction": float(np.mean(heights > 0)),
        "defocus_radius_px": (float(blur.min()), float(blur.max())),
        "f_px": geo.f_px,
        **look,
    }
    return rainy, mask, info
