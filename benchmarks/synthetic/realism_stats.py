"""Statistics of raindrops in a rainy/clean pair, the same for real and synthetic drops.

The drop mask is computed from the pair exactly as the project computes the
Raindrop dataset's masks (`tf_deraindrop.data.masks.compute_mask`, max channel
difference >= 30/255), so real and rendered drops are measured alike, never
with a renderer's own mask. Statistics (Y is BT.601 luma in [0, 1]):

* `brightening`: mean `Y_rainy - Y_clean` inside the mask.
* `detail_kept`: high-frequency energy (Y minus its Gaussian blur, sigma 2 px)
  of the rainy image inside the mask, over that of the clean image there.
* `radius_max`, `radius_median`, `drops`: equivalent radii `sqrt(area / pi)`
  of the mask's connected components of at least `MIN_AREA` px, over the short
  side, and how many there are.
* `edge_width`: how soft drop edges are, in px: at the mask's border, the
  smoothed difference over its gradient (the distance over which the
  difference would ramp down to zero); median over the border.
* `colour_shift`: length of the mean RGB difference inside the mask once its
  grey part (the mean over channels) is removed; `saturation_kept`: mean
  chroma (max - min channel) of the rainy image inside the mask over the
  clean image's.
* `coverage`: the mask's share of the image.

Per-drop values (components of at least `DROP_AREA` px) of the brightening,
detail kept and colour shift give the spread of real drops (`spread`).

Example:
    >>> stats = pair_stats(rainy, clean)
    >>> stats["brightening"], stats["radius_max"]
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tf_deraindrop.data.masks import compute_mask

MIN_AREA = 30  # px: smaller components are noise (leaves moving, JPEG)
DROP_AREA = 300  # px: components measured one by one for the per-drop spread
HF_SIGMA = 2.0
_LUMA = np.array([0.299, 0.587, 0.114])

#: Statistic names in table order, with their formats.
STATS = {
    "brightening": "{:+.3f}",
    "detail_kept": "{:.0%}",
    "radius_max": "{:.3f}",
    "radius_median": "{:.3f}",
    "drops": "{:.0f}",
    "edge_width": "{:.1f}",
    "colour_shift": "{:.3f}",
    "saturation_kept": "{:.0%}",
    "coverage": "{:.1%}",
}


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of float RGB in [0, 1]."""
    return np.asarray(image, dtype=np.float64)[..., :3] @ _LUMA


def brightening(rainy: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """Mean luma increase inside `mask` (NaN for an empty mask)."""
    if not mask.any():
        return float("nan")
    return float((luma(rainy) - luma(clean))[mask].mean())


def _high_pass(y: np.ndarray) -> np.ndarray:
    return y - ndimage.gaussian_filter(y, HF_SIGMA, mode="reflect")


def detail_kept(rainy: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """High-frequency energy of the rainy image over the clean one's, inside `mask`."""
    clean_energy = float((_high_pass(luma(clean))[mask] ** 2).sum())
    if clean_energy <= 0:
        return float("nan")
    return float((_high_pass(luma(rainy))[mask] ** 2).sum()) / clean_energy


def components(mask: np.ndarray, min_area: int = MIN_AREA) -> tuple[np.ndarray, list[int]]:
    """Labelled 8-connected components and the labels of those of at least `min_area` px."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    return labels, [i for i in range(1, n + 1) if areas[i] >= min_area]


def drop_radii(mask: np.ndarray, min_area: int = MIN_AREA) -> np.ndarray:
    """Equivalent radii of the mask's components over the image's short side."""
    labels, keep = components(mask, min_area)
    areas = np.bincount(labels.ravel())
    return np.sqrt(areas[keep] / np.pi) / min(mask.shape)


def edge_width(rainy: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """Median, over the mask's border pixels, of difference / |gradient of difference| (px)."""
    diff = np.abs(np.asarray(rainy, np.float64) - np.asarray(clean, np.float64)).max(axis=-1)
    diff = ndimage.gaussian_filter(diff, 1.0)
    border = mask & ~ndimage.binary_erosion(mask, border_value=1)
    if not border.any():
        return float("nan")
    gy, gx = np.gradient(diff)
    grad = np.hypot(gy, gx)[border]
    return float(np.median(diff[border] / np.maximum(grad, 1e-4)))


def colour_shift(rainy: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """Chromatic part of the mean RGB difference inside `mask`."""
    if not mask.any():
        return float("nan")
    mean = (np.asarray(rainy, np.float64) - np.asarray(clean, np.float64))[mask].mean(axis=0)
    return float(np.linalg.norm(mean - mean.mean()))


def saturation_kept(rainy: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """Mean chroma (max - min channel) of the rainy image inside `mask` over the clean's."""

    def chroma(image: np.ndarray) -> float:
        pixels = np.asarray(image, np.float64)[mask]
        return float((pixels.max(axis=-1) - pixels.min(axis=-1)).mean())

    if not mask.any():
        return float("nan")
    base = chroma(clean)
    return chroma(rainy) / base if base > 0 else float("nan")


def per_drop(rainy: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> dict[str, list[float]]:
    """Brightening, detail kept and colour shift of every component of >= `DROP_AREA` px."""
    labels, keep = components(mask, DROP_AREA)
    out: dict[str, list[float]] = {"brightening": [], "detail_kept": [], "colour_shift": []}
    for label in keep:
        drop = labels == label
        out["brightening"].append(brightening(rainy, clean, drop))
        out["detail_kept"].append(detail_kept(rainy, clean, drop))
        out["colour_shift"].append(colour_shift(rainy, clean, drop))
    return out


def pair_stats(
    rainy: np.ndarray, clean: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, object]:
    """All statistics of one rainy/clean pair (float RGB in [0, 1], same size).

    Args:
        rainy: the image with drops.
        clean: the image without.
        mask: the drop mask; by default the project's rule on the difference.

    Returns:
        `{name: value}` for every name of `STATS`, plus `radii` (all
        equivalent radii) and `per_drop` (see `per_drop`).

    Example:
        >>> pair_stats(rainy, clean)["coverage"]
    """
    if mask is None:
        mask = compute_mask(rainy, clean)
    radii = drop_radii(mask)
    return {
        "brightening": brightening(rainy, clean, mask),
        "detail_kept": detail_kept(rainy, clean, mask),
        "radius_max": float(radii.max()) if radii.size else 0.0,
        "radius_median": float(np.median(radii)) if radii.size else 0.0,
        "drops": float(radii.size),
        "edge_width": edge_width(rainy, clean, mask),
        "colour_shift": colour_shift(rainy, clean, mask),
        "saturation_kept": saturation_kept(rainy, clean, mask),
        "coverage": float(mask.mean()),
        "radii": radii,
        "per_drop": per_drop(rainy, clean, mask),
    }


def reference_band(real: list[dict[str, object]], name: str) -> tuple[float, float]:
    """The range a synthetic value should fall in to look like the real drops.

    Per-drop statistics: the 10th-90th percentile of the real drops' values.
    Image-level ones (sizes, count, edge width, coverage, saturation): the
    real images' range widened by a factor 1.5 either way (one real pair
    gives no spread of its own).
    """
    drops = [v for s in real for v in s["per_drop"].get(name, [])]  # type: ignore[union-attr]
    if len(drops) >= 3:
        return float(np.percentile(drops, 10)), float(np.percentile(drops, 90))
    values = [float(s[name]) for s in real]  # type: ignore[arg-type]
    low, high = min(values), max(values)
    if name == "brightening":
        return low - 0.03, high + 0.03
    return low / 1.5, high * 1.5
