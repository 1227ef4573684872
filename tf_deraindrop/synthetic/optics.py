"""Camera and glass geometry, refraction through drops, and the glass's defocus.

Coordinates: the camera's pinhole (the lens centre) is the origin, +z looks
into the scene, +x to the right, +y down (image rows grow downwards). A pixel
`(row, col)` looks along `((col - cx) / f_px, (row - cy) / f_px, 1)`.

The glass is a plane crossing the optical axis `distance` metres in front of
the lens. `tilt` turns it about the x axis: positive tilt leans its top
towards the camera, as a windscreen does, so the upper rows see nearer glass
(more defocus). Drops sit on the far side of the glass as height fields
`h(gx, gy)` in metres along the glass normal; `gx`, `gy` are metres on the
glass (gy points down the slope, the way water runs).

The camera is focused on the scene (`focus` metres away), so the glass is
out of focus: a point on it spreads into a disk of diameter
`A * f_px * |1/z - 1/focus|` pixels (thin lens, aperture diameter
`A = focal / f_number`, `z` the glass depth at that pixel).

Example:
    >>> geo = Geometry.make(480, 720, distance=0.03, tilt=5.0, focal_mm=30.0,
    ...                     sensor_mm=23.5, f_number=8.0, focus=10.0)
    >>> geo.blur_radius_px().max() > 5
    True
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage, signal

#: Refractive index of water (the glass between is a parallel slab: it shifts
#: rays sideways by a fraction of a millimetre but does not turn them).
WATER_INDEX = 1.333


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Per-pixel camera rays and where they cross the glass."""

    height: int
    width: int
    f_px: float
    aperture_m: float
    focus_m: float
    normal: np.ndarray  # glass normal, unit, pointing into the scene
    rays: np.ndarray  # (H, W, 3) unit camera rays
    glass_xy: np.ndarray  # (2, H, W) metres on the glass
    glass_z: np.ndarray  # (H, W) depth of the glass along the optical axis

    @staticmethod
    def make(
        height: int,
        width: int,
        distance: float,
        tilt: float,
        focal_mm: float,
        sensor_mm: float,
        f_number: float,
        focus: float,
    ) -> Geometry:
        """Builds the geometry; `tilt` in degrees, `sensor_mm` is the sensor's width."""
        f_px = focal_mm / sensor_mm * width
        tau = math.radians(tilt)
        normal = np.array([0.0, -math.sin(tau), math.cos(tau)])
        down = np.array([0.0, math.cos(tau), math.sin(tau)])  # along the glass, downwards
        ys = (np.arange(height, dtype=np.float64) - (height - 1) / 2) / f_px
        xs = (np.arange(width, dtype=np.float64) - (width - 1) / 2) / f_px
        rays = np.empty((height, width, 3))
        rays[..., 0] = xs[None, :]
        rays[..., 1] = ys[:, None]
        rays[..., 2] = 1.0
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        cos_in = rays @ normal
        if np.any(cos_in <= 0.05):
            raise ValueError(f"glass_tilt {tilt} deg turns the glass edge-on to part of the view")
        t = distance * normal[2] / cos_in
        points = rays * t[..., None]
        glass_xy = np.stack([points[..., 0], points @ down])
        return Geometry(
            height=height,
            width=width,
            f_px=f_px,
            aperture_m=focal_mm / 1000.0 / f_number,
            focus_m=focus,
            normal=normal,
            rays=rays,
            glass_xy=glass_xy,
            glass_z=points[..., 2],
        )

    def metres_per_px(self) -> float:
        """Size of a pixel on the glass near the image centre."""
        cy, cx = self.height // 2, self.width // 2
        return float(abs(self.glass_xy[0, cy, cx + 1] - self.glass_xy[0, cy, cx]))

    def blur_radius_px(self) -> np.ndarray:
        """Defocus disk radius in pixels of each pixel's glass point, `(H, W)`."""
        return 0.5 * self.aperture_m * self.f_px * np.abs(1.0 / self.glass_z - 1.0 / self.focus_m)


def _refract(incident: np.ndarray, facing: np.ndarray, eta: float | np.ndarray):
    """Snell's law in vector form; `facing` is the unit normal against the ray.

    Returns the refracted unit rays and a bool map of total internal reflection.
    """
    cos_i = -np.sum(incident * facing, axis=-1, keepdims=True)
    k = 1.0 - eta * eta * (1.0 - cos_i * cos_i)
    tir = k[..., 0] < 0
    out = eta * incident + (eta * cos_i - np.sqrt(np.maximum(k, 0.0))) * facing
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    return out, tir


def trace_drops(geo: Geometry, height: np.ndarray, box: tuple[slice, slice]):
    """Rays through the water on the pixels of `box`: air -> water -> air.

    The glass-water face is flat, the water-air face is the height field's
    surface. The exit point is taken where the ray enters the water (the
    drop is a millimetre thick, the scene metres away), so only the ray's
    direction matters; the surface normal comes from the height field's
    gradient in glass metres.

    Args:
        geo: the camera/glass geometry.
        height: `(H, W)` drop heights in metres (0 off the drops).
        box: the rows/cols to trace.

    Returns:
        `(directions, tir, wet)`: outgoing unit rays `(n, 3)` and where the
        exit face reflects totally (the light comes from inside the car/room),
        for the `n` wet pixels of the bool map `wet` `(h, w)` of the box.
    """
    h = height[box]
    gx, gy = geo.glass_xy[0][box], geo.glass_xy[1][box]
    # Chain rule: dh/d(pixel) = dh/d(glass) . d(glass)/d(pixel); invert per pixel.
    dh_r, dh_c = np.gradient(h)
    gx_r, gx_c = np.gradient(gx)
    gy_r, gy_c = np.gradient(gy)
    det = gx_c * gy_r - gx_r * gy_c
    det = np.where(np.abs(det) < 1e-18, 1e-18, det)
    wet = h > 0
    det = det[wet]
    hx = (dh_c[wet] * gy_r[wet] - dh_r[wet] * gy_c[wet]) / det
    hy = (dh_r[wet] * gx_c[wet] - dh_c[wet] * gx_r[wet]) / det
    n = geo.normal
    down = np.array([0.0, n[2], -n[1]])
    across = np.array([1.0, 0.0, 0.0])
    surface = n[None, :] - hx[:, None] * across - hy[:, None] * down
    surface /= np.linalg.norm(surface, axis=-1, keepdims=True)
    rays = geo.rays[box][wet]
    inside, _ = _refract(rays, -n[None, :], 1.0 / WATER_INDEX)
    out, tir = _refract(inside, -surface, WATER_INDEX)
    return out, tir, wet


def directions_to_pixels(geo: Geometry, directions: np.ndarray, box: tuple[slice, slice], wet):
    """Where the scene seen along `directions` (from the `wet` glass points of `box`) is imaged.

    Returns `(rows, cols, forward)`: image coordinates (floats, possibly off
    the frame) and where the ray goes forwards at all.
    """
    rays = geo.rays[box][wet]
    points = rays * (geo.glass_z[box][wet] / rays[..., 2])[..., None]
    dz = directions[..., 2]
    forward = dz > 0.05
    s = (geo.focus_m - points[..., 2]) / np.where(forward, dz, 1.0)
    x = points[..., 0] + s * directions[..., 0]
    y = points[..., 1] + s * directions[..., 1]
    cols = geo.f_px * x / geo.focus_m + (geo.width - 1) / 2
    rows = geo.f_px * y / geo.focus_m + (geo.height - 1) / 2
    return rows, cols, forward


def disk_kernel(radius: float) -> np.ndarray:
    """A normalised disk (the lens aperture) of `radius` px with an anti-aliased edge."""
    r = max(float(radius), 0.5)
    n = int(math.ceil(r + 1))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    kernel = np.clip(r + 0.5 - np.hypot(yy, xx), 0.0, 1.0)
    return kernel / kernel.sum()


def _blur_level(layer: np.ndarray, radius: float) -> np.ndarray:
    if radius < 0.75:
        return layer
    kernel = disk_kernel(radius)[..., None]
    return signal.fftconvolve(layer, kernel, mode="same", axes=(0, 1))


def defocus(layer: np.ndarray, radius_map: np.ndarray, levels: int = 4) -> np.ndarray:
    """Blurs `layer` `(H, W, C)` with disks whose radius varies over the image.

    The radius map is smooth (it follows the glass depth), so the layer is
    blurred at a few radii spanning it and each pixel interpolates between the
    two nearest. Large blurs run at half resolution (the result is smooth).

    Example:
        >>> out = defocus(np.random.rand(64, 64, 4), np.full((64, 64), 3.0))
    """
    height, width = layer.shape[:2]
    lo, hi = float(radius_map.min()), float(radius_map.max())
    scale = 2 if lo > 6.0 and min(height, width) >= 64 else 1
    work = layer
    if scale == 2:
        h2, w2 = height // 2 * 2, width // 2 * 2
        work = layer[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2, -1).mean(axis=(1, 3))
    radii = np.linspace(lo, hi, levels) if hi > lo * 1.1 + 0.5 else np.array([0.5 * (lo + hi)])
    blurred = [_blur_level(work, r / scale) for r in radii]
    if len(radii) == 1:
        out = blurred[0]
    else:
        small_map = radius_map
        if scale == 2:
            small_map = radius_map[: work.shape[0] * 2 : 2, : work.shape[1] * 2 : 2]
        pos = np.clip((small_map - lo) / (hi - lo) * (len(radii) - 1), 0, len(radii) - 1 - 1e-6)
        index = pos.astype(int)[..., None]
        frac = (pos - pos.astype(int))[..., None]
        out = np.zeros_like(blurred[0])
        for i, b in enumerate(blurred):
            out += (np.where(index == i, 1.0 - frac, 0.0) + np.where(index == i - 1, frac, 0.0)) * b
    if scale == 2:
        # One upsampling of the blended result (it is smooth: bilinear is enough).
        zoom = (height / work.shape[0], width / work.shape[1], 1)
        out = ndimage.zoom(out, zoom, order=1, mode="nearest", grid_mode=True)[:height, :width]
    return out
