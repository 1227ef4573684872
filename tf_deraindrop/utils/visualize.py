"""Pictures of the attention maps: one heat-map palette for panels, PNGs and videos.

The training panels (TensorBoard and `samples/`), `predict --save-attention`
for images and videos, and `predict --compare` all colour attention with the
same palette: black for 0 through purple, red and orange to pale yellow for
1. Its brightness rises monotonically, so it also reads in gray print.

The attention maps have no sigmoid (docs/architecture.md, section 2): they are shown on
the fixed scale [0, 1] and clipped, which keeps maps of different images and
frames comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Anchors of the palette (value, R, G, B), interpolated linearly between.
HEAT_ANCHORS = np.array(
    [
        [0.00, 0, 0, 4],
        [0.25, 80, 18, 123],
        [0.50, 182, 54, 84],
        [0.75, 251, 136, 25],
        [1.00, 252, 253, 191],
    ],
    dtype=np.float64,
)


def _as_map(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 2:
        raise ValueError(f"Expected an attention map (H, W); got shape {values.shape}.")
    return values


def _levels(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Palette colours in 0..255 (float64, `(H, W, 3)`) of a map on the scale [vmin, vmax]."""
    t = np.clip((_as_map(values) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    t = np.nan_to_num(t, nan=0.0)
    channels = [np.interp(t, HEAT_ANCHORS[:, 0], HEAT_ANCHORS[:, c]) for c in (1, 2, 3)]
    return np.stack(channels, axis=-1)


def attention_heatmap(attention: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """An attention map `(H, W)` or `(H, W, 1)` as a uint8 RGB heat map `(H, W, 3)`.

    Args:
        attention: the map; values outside `[vmin, vmax]` are clipped, NaN is 0.
        vmin, vmax: the values shown as black and as pale yellow.

    Raises:
        ValueError: the array is not one map.

    Example:
        >>> attention_heatmap(np.array([[0.0, 1.0]])).shape
        (1, 2, 3)
    """
    return np.clip(np.round(_levels(attention, vmin, vmax)), 0, 255).astype(np.uint8)


def heat_map(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Like `attention_heatmap`, as float32 RGB in [0, 1] (for panels of float images).

    Example:
        >>> heat_map(np.zeros((2, 3, 1))).dtype
        dtype('float32')
    """
    return (_levels(values, vmin, vmax) / 255.0).astype(np.float32)


def make_panel(rainy, attention_maps: Sequence, derained, clean, gap: int = 2) -> np.ndarray:
    """One row per example: rainy | A_1 ... A_N (heat maps) | output | clean.

    Args:
        rainy, derained, clean: `(B, H, W, 3)` float in [0, 1] (output is clipped).
        attention_maps: `[A_1, ..., A_N]`, each `(B, H, W, 1)`.
        gap: white pixels between tiles and rows.

    Returns:
        float32 RGB `(B * H + gaps, (N + 3) * W + gaps, 3)` in [0, 1].

    Example:
        >>> x = np.zeros((1, 4, 4, 3))
        >>> make_panel(x, [np.zeros((1, 4, 4, 1))], x, x, gap=1).shape
        (4, 19, 3)
    """
    return panel_rows([rainy], attention_maps, [derained, clean], gap)


def panel_rows(before: Sequence, attention_maps: Sequence, after: Sequence, gap: int = 2):
    """One row per example: the `before` images, the attention heat maps, the `after` images.

    Args:
        before, after: lists of `(B, H, W, 3)` float batches (clipped to [0, 1]).
        attention_maps: `[A_1, ..., A_N]`, each `(B, H, W, 1)`.
        gap: white pixels between tiles and rows.

    Returns:
        float32 RGB `(B * H + gaps, columns * W + gaps, 3)` in [0, 1].

    Example:
        >>> x = np.zeros((2, 4, 4, 3))
        >>> panel_rows([x, x], [], [x], gap=1).shape
        (9, 14, 3)
    """
    before, after = (
        [np.clip(np.nan_to_num(np.asarray(a, np.float32)), 0, 1) for a in images]
        for images in (before, after)
    )
    maps = [np.asarray(a) for a in attention_maps]
    rows = []
    for i in range((before or after)[0].shape[0]):
        tiles = [b[i] for b in before] + [heat_map(a[i]) for a in maps] + [a[i] for a in after]
        rows.append(side_by_side(tiles, gap=gap, fill=1.0))
    return np.concatenate(_spaced(rows, gap, axis=0, fill=1.0), axis=0)


def _spaced(arrays: list[np.ndarray], gap: int, axis: int, fill) -> list[np.ndarray]:
    """`arrays` with a `gap`-wide band of `fill` between neighbours along `axis`."""
    out = [arrays[0]]
    for array in arrays[1:]:
        shape = list(array.shape)
        shape[axis] = gap
        out += [np.full(shape, fill, array.dtype), array]
    return out


def side_by_side(images: Sequence[np.ndarray], gap: int = 4, fill=None) -> np.ndarray:
    """Images of the same height and dtype in a row, separated by white bands.

    Args:
        images: `(H, W_i, 3)` arrays, uint8 or float in [0, 1].
        gap: width of the bands in pixels.
        fill: value of the bands (default: white, 255 for uint8, else 1.0).

    Returns:
        `(H, sum(W_i) + gap * (len(images) - 1), 3)` of the images' dtype.

    Example:
        >>> a = np.zeros((2, 3, 3), np.uint8)
        >>> side_by_side([a, a], gap=2).shape
        (2, 8, 3)
    """
    images = [np.asarray(image) for image in images]
    heights = {image.shape[0] for image in images}
    if len(heights) != 1:
        raise ValueError(f"side_by_side needs images of one height; got {sorted(heights)}")
    if fill is None:
        fill = 255 if images[0].dtype == np.uint8 else 1.0
    return np.concatenate(_spaced(images, gap, axis=1, fill=fill), axis=1)
