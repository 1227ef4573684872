"""Light and camera: linear light, the world around the frame, and the camera pipeline.

A drop is a wide-angle lens (Garg & Nayar): it gathers light from a cone far
wider than the camera's view, mostly from above (it inverts), so its
brightness depends on the sky and only weakly on what is right behind it.
Rays refracted off the frame therefore read an environment map: the
blurred frame, extended past its edges, fading into a sky above the horizon
and into the ground below (`Environment`). The edge pixel alone would paint
drops in the colour of whatever touches the frame's border.

The camera pipeline acts on the rainy image only (the clean one is the
reference): exposure and white-balance jitter, a faint water film (haze
that lowers contrast), shot and read noise, JPEG.

Example:
    >>> lin = srgb_to_linear(np.full((4, 4, 3), 0.5, np.float32))
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image
from scipy import ndimage


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light to sRGB-encoded values in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


class Environment:
    """Radiance for any direction: the frame where it is seen, a sky/ground model elsewhere.

    The map is an equirectangular canvas (azimuth, elevation) at `step`
    degrees, built from a small, blurred copy of the linear image.
    """

    def __init__(self, linear: np.ndarray, f_px: float, sky: float, ground: float, step=1.0):
        height, width = linear.shape[:2]
        self.step = step
        self.f_px, self.height, self.width = f_px, height, width
        top = linear[: max(1, height // 6)].reshape(-1, 3)
        bottom = linear[-max(1, height // 5) :].reshape(-1, 3)
        # Sky: the top rows' brightest tenth (the frame's own sky, if any),
        # lifted to the drawn luminance; ground: the bottom rows, dimmed.
        lum = top @ np.array([0.2126, 0.7152, 0.0722])
        hue = top[lum >= np.quantile(lum, 0.9)].mean(axis=0) + 1e-4
        hue = 0.5 * hue / hue.mean() + 0.5  # halfway to white: skies are pale
        self.sky = sky * hue / (hue @ np.array([0.2126, 0.7152, 0.0722]))
        self.ground = ground * bottom.mean(axis=0)
        az = np.radians(np.arange(-180.0, 180.0 + step, step))
        el = np.radians(np.arange(90.0, -90.0 - step, -step))
        azz, ell = np.meshgrid(az, el)
        x, y, z = np.cos(ell) * np.sin(azz), -np.sin(ell), np.cos(ell) * np.cos(azz)
        zs = np.maximum(z, 1e-3)
        cols = f_px * x / zs + (width - 1) / 2
        rows = f_px * y / zs + (height - 1) / 2
        outside_px = np.hypot(
            np.maximum(np.maximum(-cols, cols - (width - 1)), 0),
            np.maximum(np.maximum(-rows, rows - (height - 1)), 0),
        )
        outside_px = np.where(z > 1e-3, outside_px, 10 * f_px)
        small = self._small(linear)
        sy = (small.shape[0] - 1) / max(height - 1, 1)
        sx = (small.shape[1] - 1) / max(width - 1, 1)
        coords = [np.clip(rows, 0, height - 1) * sy, np.clip(cols, 0, width - 1) * sx]
        edge = np.stack(
            [ndimage.map_coordinates(small[..., c], coords, order=1) for c in range(3)], axis=-1
        )
        horizon = 1.0 / (1.0 + np.exp(-np.degrees(ell) / 4.0))
        world = horizon[..., None] * self.sky + (1 - horizon[..., None]) * self.ground
        # The frame fades into the world over ~20 degrees past its edge.
        fade = np.clip(np.degrees(np.arctan(outside_px / f_px)) / 20.0, 0.0, 1.0)[..., None]
        canvas = (1 - fade) * edge + fade * world
        self.canvas = ndimage.gaussian_filter(canvas, (2.0 / step, 2.0 / step, 0), mode="nearest")
        self.ambient = 0.6 * self.sky + 0.4 * linear.reshape(-1, 3).mean(axis=0)

    @staticmethod
    def _small(linear: np.ndarray) -> np.ndarray:
        factor = max(1, min(linear.shape[:2]) // 48)
        h, w = linear.shape[0] // factor * factor, linear.shape[1] // factor * factor
        small = linear[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).mean((1, 3))
        return ndimage.gaussian_filter(small, (1.5, 1.5, 0), mode="nearest")

    def lookup(self, directions: np.ndarray) -> np.ndarray:
        """Radiance `(..., 3)` of unit `directions` `(..., 3)` (camera frame)."""
        x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
        az = np.degrees(np.arctan2(x, z))
        el = np.degrees(np.arcsin(np.clip(-y, -1.0, 1.0)))
        coords = [(90.0 - el) / self.step, (az + 180.0) / self.step]
        return np.stack(
            [
                ndimage.map_coordinates(self.canvas[..., c], coords, order=1, mode="nearest")
                for c in range(3)
            ],
            axis=-1,
        )


def pipeline(linear: np.ndarray, rng: np.random.Generator, look: dict[str, float]) -> np.ndarray:
    """The camera's processing of the rainy frame; returns sRGB float32 in [0, 1].

    Args:
        linear: the rainy frame in linear light `(H, W, 3)`.
        rng: the render's generator (draws noise).
        look: drawn values: `exposure` (gain), `white_balance` (3 gains),
            `film` (share of water-film haze), `noise` (read-noise sigma),
            `jpeg_quality` (0: no JPEG).
    """
    out = linear * (look["exposure"] * np.asarray(look["white_balance"]))[None, None, :]
    film = look["film"]
    if film > 0:
        sigma = 0.02 * min(out.shape[:2])
        haze = ndimage.gaussian_filter(out, (sigma, sigma, 0), mode="nearest", truncate=2.0)
        out = (1.0 - film) * out + film * (haze + 0.05)
    noise = look["noise"]
    if noise > 0:
        # Shot noise grows with the signal, read noise does not.
        std = np.sqrt(np.maximum(out, 0.0) * noise * 0.5 + noise * noise)
        out = out + std * rng.standard_normal(out.shape, dtype=np.float32)
    srgb = linear_to_srgb(out.astype(np.float32)).astype(np.float32)
    quality = int(look["jpeg_quality"])
    if quality > 0:
        buffer = io.BytesIO()
        Image.fromarray(np.round(srgb * 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=quality
        )
        buffer.seek(0)
        srgb = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0
    return srgb


def draw_camera_look(rng: np.random.Generator, p: dict, draw) -> dict[str, float]:
    """The camera pipeline's values for one image."""
    wb = draw(rng, p["white_balance_jitter"])
    return {
        "exposure": math.exp(rng.uniform(-1, 1) * draw(rng, p["exposure_jitter"])),
        "white_balance": tuple(np.exp(rng.uniform(-wb, wb, 3))),
        "film": draw(rng, p["water_film"]),
        "noise": draw(rng, p["noise"]),
        "jpeg_quality": round(draw(rng, p["jpeg_quality"])),
    }
