"""Drops on the glass as height fields: sizes, irregular outlines, merging, streaks, trails.

Every drop is a spherical cap of footprint radius `a` and contact angle
`theta` (sphere radius `a / sin(theta)`). Real drops are not circles
(pinned contact lines, Roser & Geiger's drops on inclined glass), so the
cap's radial profile is laid over an outline `r(phi) = a (1 + sum_k e_k
cos(k phi + p_k))`: a few low harmonics, the first one pointing down the
glass (gravity makes drops bulge at the bottom). Streaks are caps stretched
down the glass; a sliding drop leaves a trail, a thin low water band above
it; merged drops are several lobes joined by a smooth maximum (a neck, not a
crease). Heights are in metres; all drops add into one height map by a
maximum (overlapping drops show the one standing highest).

Example:
    >>> rng = np.random.default_rng(0)
    >>> drop = Drop.draw(rng, 0.0, 0.0, 0.002, {"contact_angle": 50, "irregularity": 0.1})
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

_HARMONICS = 5
_SMOOTH_MAX = 12.0  # sharpness of the merge neck, per cap height


def draw(rng: np.random.Generator, value: Any) -> float:
    """A number, or a uniform draw from a `(low, high)` range."""
    if isinstance(value, (tuple, list)):
        low, high = float(value[0]), float(value[1])
        return float(rng.uniform(low, high)) if high > low else low
    return float(value)


def span(value: Any) -> tuple[float, float]:
    """`(low, high)` of a number or a range."""
    if isinstance(value, (tuple, list)):
        return float(value[0]), float(value[1])
    return float(value), float(value)


@dataclasses.dataclass(frozen=True)
class Lobe:
    """One spherical cap: centre (m, on the glass), footprint radius (m), stretch, outline."""

    cx: float
    cy: float
    radius: float
    contact: float  # radians
    stretch: float  # > 1: longer down the glass
    amps: tuple[float, ...]
    phases: tuple[float, ...]

    def reach(self) -> float:
        return self.radius * math.sqrt(self.stretch) * (1.0 + sum(abs(a) for a in self.amps))

    def height(self, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        """Cap height on glass coordinates (negative outside the footprint)."""
        s = math.sqrt(self.stretch)
        u = (gx - self.cx) * s
        v = (gy - self.cy) / s
        rho = np.hypot(u, v)
        phi = np.arctan2(v, u)
        outline = np.ones_like(rho)
        for k, (amp, phase) in enumerate(zip(self.amps, self.phases), start=1):
            outline += amp * np.cos(k * phi - phase)
        rho_n = rho / np.maximum(outline, 0.3)  # radius as if the outline were round
        sphere = self.radius / math.sin(self.contact)
        base = sphere * math.cos(self.contact)
        inside = np.sqrt(np.maximum(sphere * sphere - rho_n * rho_n, 0.0)) - base
        # Outside the footprint: a negative slope continuing the rim, so the
        # smooth maximum of merged lobes stays continuous.
        return np.where(rho_n < self.radius, inside, (self.radius - rho_n) * math.tan(self.contact))

    def top(self) -> float:
        sphere = self.radius / math.sin(self.contact)
        return sphere * (1.0 - math.cos(self.contact))


@dataclasses.dataclass(frozen=True)
class Drop:
    """One drop: one or several lobes (merged), optionally with a trail above it."""

    lobes: tuple[Lobe, ...]
    trail: tuple[float, float, float, float] | None  # (length, width, contact, top x shift)

    @staticmethod
    def draw(
        rng: np.random.Generator, cx: float, cy: float, radius: float, p: dict[str, Any]
    ) -> Drop:
        """A random drop centred at `(cx, cy)` metres with footprint radius `radius` metres."""
        contact = math.radians(draw(rng, p["contact_angle"]))
        irregular = draw(rng, p.get("irregularity", 0.0))

        def lobe(x: float, y: float, r: float, stretch: float) -> Lobe:
            amps = irregular * rng.uniform(0.2, 1.0, _HARMONICS) / np.arange(1, _HARMONICS + 1)
            phases = rng.uniform(0, 2 * math.pi, _HARMONICS)
            phases[0] = math.pi / 2 + rng.normal(0, 0.3)  # bulge towards +gy (down)
            angle = contact * rng.uniform(0.85, 1.1)
            return Lobe(x, y, r, min(angle, math.radians(89)), stretch, tuple(amps), tuple(phases))

        kind = rng.uniform()
        merge, streak = float(p.get("merge_prob", 0.0)), float(p.get("streak_prob", 0.0))
        if kind < streak:
            stretch = draw(rng, p.get("streak_stretch", (1.5, 3.0)))
            lobes = [lobe(cx, cy, radius, stretch)]
            trail = None
            if rng.uniform() < float(p.get("trail_prob", 0.0)):
                length = radius * draw(rng, p.get("trail_length", (2.0, 8.0)))
                width = radius * rng.uniform(0.25, 0.6)
                trail = (length, width, math.radians(15.0), rng.normal(0, 0.15) * length)
            return Drop(tuple(lobes), trail)
        lobes = [lobe(cx, cy, radius, rng.uniform(1.0, 1.25))]
        if kind < streak + merge:
            for _ in range(int(rng.integers(1, 4))):
                base = lobes[int(rng.integers(len(lobes)))]
                r = radius * rng.uniform(0.35, 0.9)
                dist = (base.radius + r) * rng.uniform(0.55, 0.95)
                phi = rng.uniform(0, 2 * math.pi)
                x, y = base.cx + dist * math.cos(phi), base.cy + dist * math.sin(phi)
                lobes.append(lobe(x, y, r, rng.uniform(1.0, 1.25)))
        return Drop(tuple(lobes), None)

    def reach(self) -> tuple[float, float, float, float]:
        """Bounding box `(x0, x1, y0, y1)` in glass metres."""
        boxes = [
            (lb.cx - lb.reach(), lb.cx + lb.reach(), lb.cy - lb.reach(), lb.cy + lb.reach())
            for lb in self.lobes
        ]
        if self.trail is not None:
            length, width, _, shift = self.trail
            lb = self.lobes[0]
            boxes.append(
                (
                    lb.cx + min(shift, 0) - width,
                    lb.cx + max(shift, 0) + width,
                    lb.cy - length,
                    lb.cy,
                )
            )
        return (
            min(b[0] for b in boxes),
            max(b[1] for b in boxes),
            min(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )

    def height(self, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        parts = [lb.height(gx, gy) for lb in self.lobes]
        if len(parts) == 1:
            h = parts[0]
        else:
            # Smooth maximum on the scale of the caps' heights: merged lobes
            # join with a concave neck, as coalescing drops do.
            scale = _SMOOTH_MAX / max(lb.top() for lb in self.lobes)
            stack = np.stack(parts) * scale
            top = stack.max(axis=0)
            h = (top + np.log(np.exp(stack - top).sum(axis=0))) / scale
        if self.trail is not None:
            h = np.maximum(h, self._trail_height(gx, gy))
        return h

    def _trail_height(self, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        length, width, contact, shift = self.trail
        head = self.lobes[0]
        along = np.clip((head.cy - gy) / length, 0.0, 1.0)  # 0 at the drop, 1 at the top
        centre = head.cx + shift * along * along  # trails wander a little
        half = width * (1.0 - 0.8 * along)  # and thin out upwards
        across = np.abs(gx - centre)
        sphere = half / math.sin(contact)
        inside = np.sqrt(np.maximum(sphere * sphere - across * across, 0.0)) - sphere * math.cos(
            contact
        )
        valid = (gy <= head.cy) & (gy >= head.cy - length) & (across < half)
        return np.where(valid, inside, -1.0)


def radii(rng: np.random.Generator, low: float, high: float, exponent: float, n: int) -> np.ndarray:
    """`n` radii from a truncated power law `p(a) ~ a**-exponent` on `[low, high]`."""
    u = rng.uniform(size=n)
    if abs(exponent - 1.0) < 1e-6:
        return low * (high / low) ** u
    k = 1.0 - exponent
    return (low**k + u * (high**k - low**k)) ** (1.0 / k)
