"""Covering an image of any size with overlapping tiles, blended with linear ramps.

One model pass over a whole photo needs memory in proportion to its pixels
(the Keras generator about 1.3 KB a pixel on the CPU: 3.6 GB at 1920 x 1080,
about 16 GB at 4000 x 3000; `benchmarks/results/tiling_cpu.txt`). Tiles
bound that: each tile goes through the model on its own, neighbouring tiles
overlap, and in the overlaps the outputs are blended with weights that ramp
linearly from one tile to the next, so that no seam shows. Finished rows
leave the accumulator as soon as no later tile touches them, so the blending
itself holds one row of tiles at a time.

`tf_deraindrop.derain` (Keras) and `tf_deraindrop.inference.tflite.LiteDerainer`
(`.tflite`, one static tile size) both run on this module, with the same
padding rule, so that the same tiles give the same result.

Example:
    >>> import numpy as np
    >>> image = np.random.default_rng(0).random((50, 70, 3), dtype=np.float32)
    >>> out = tile_and_blend(lambda t: t, image, (32, 32), overlap=8)
    >>> bool(np.allclose(out, image))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from tf_deraindrop.utils.images import to_float_rgb, to_uint8


def pad_mode(height: int, width: int, pad_height: int, pad_width: int) -> str:
    """The `np.pad` mode for padding an image at the bottom and right.

    Reflection (`reflect`) keeps the border statistics natural; an image
    too small to reflect once (a side not longer than its pad) is mirrored
    with its edge pixel repeated (`symmetric`), which numpy repeats as often
    as needed.
    """
    return "reflect" if height > pad_height and width > pad_width else "symmetric"


def pad_to(image: np.ndarray, height: int, width: int, mode: str | None = None) -> np.ndarray:
    """Pads `(H, W, C)` at the bottom and right to `(height, width)` (no-op when it fits).

    Args:
        image: array of at least two dimensions.
        height: target height, at least the image's.
        width: target width, at least the image's.
        mode: `np.pad` mode; None for `pad_mode` of this image.

    Example:
        >>> pad_to(np.zeros((3, 5, 1)), 4, 8).shape
        (4, 8, 1)
    """
    h, w = image.shape[:2]
    ph, pw = height - h, width - w
    if ph < 0 or pw < 0:
        raise ValueError(f"cannot pad {h} x {w} to the smaller {height} x {width}")
    if ph == 0 and pw == 0:
        return image
    mode = mode or pad_mode(h, w, ph, pw)
    widths = ((0, ph), (0, pw)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths, mode=mode)


def positions(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering `size`, overlapping by at least `overlap`.

    The tiles are spread evenly: the first starts at 0, the last ends at `size`.

    Example:
        >>> positions(100, 40, 10)
        [0, 30, 60]
    """
    if size <= tile:
        return [0]
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")
    count = math.ceil((size - overlap) / (tile - overlap))
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def ramp(tile: int, start: int, size: int, overlap: int) -> np.ndarray:
    """Blending weight along one axis of a tile, float32 of length `tile`.

    The weight ramps up over `overlap` pixels on a side with a neighbouring
    tile and is 1 elsewhere, never 0, so every pixel has a positive total.
    """
    x = np.arange(tile, dtype=np.float32) + 0.5
    weight = np.ones(tile, np.float32)
    if overlap > 0:
        if start > 0:  # a neighbour before: ramp up
            weight = np.minimum(weight, x / overlap)
        if start + tile < size:  # a neighbour after: ramp down
            weight = np.minimum(weight, (tile - x) / overlap)
    return weight


def _ceil_to(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def choose_tile(
    height: int, width: int, max_pixels: int, overlap: int, multiple: int = 4
) -> tuple[int, int]:
    """The tile size, at most `max_pixels`, that covers `height x width` with the least work.

    Every grid of `ny x nx` tiles is tried; each tile side is a multiple of
    `multiple` just long enough for its grid to cover the image with the
    overlap. The grid that runs the fewest pixels through the model wins
    (fewer tiles on a tie). An image that fits in `max_pixels` once padded
    to the multiple is one tile.

    Args:
        height: image height.
        width: image width.
        max_pixels: the most pixels one tile may have.
        overlap: overlap of neighbouring tiles.
        multiple: tile sides are multiples of this (the generator needs 4).

    Raises:
        ValueError: `max_pixels` leaves no tile longer than twice the overlap.

    Example:
        >>> choose_tile(1080, 1920, 1024 * 1024, 128)
        (1080, 728)
    """
    full_h, full_w = _ceil_to(height, multiple), _ceil_to(width, multiple)
    if full_h * full_w <= max_pixels:
        return full_h, full_w
    shortest = _ceil_to(2 * overlap + 1, multiple)
    if shortest * shortest > max_pixels:
        raise ValueError(
            f"max_pixels={max_pixels} is too small for an overlap of {overlap} pixels "
            f"(a tile must be at least {shortest} x {shortest})"
        )

    def side(size: int, count: int) -> int:
        if count == 1:
            return _ceil_to(size, multiple)
        longest = size - size % multiple
        return min(_ceil_to((size + (count - 1) * overlap) / count, multiple), longest)

    best = None
    for ny in range(1, math.ceil(height / (shortest - overlap)) + 2):
        th = side(height, ny)
        if th < shortest and ny > 1:
            break
        nx_needed = 1
        while True:
            tw = side(width, nx_needed)
            if th * tw <= max_pixels or tw < shortest:
                break
            nx_needed += 1
        if th * tw > max_pixels or (tw < shortest and nx_needed > 1):
            continue
        count = len(positions(height, th, overlap)) * len(positions(width, tw, overlap))
        cost = (count * th * tw, count)
        if best is None or cost < best[0]:
            best = (cost, (th, tw))
    if best is None:
        raise ValueError(f"no tile of at most {max_pixels} pixels covers {height} x {width}")
    return best[1]


def _checked_image(image) -> np.ndarray:
    """`image` as an array, once `to_float_rgb` found its shape and dtype usable (a 1-pixel try)."""
    image = np.asarray(image)
    to_float_rgb(image[:1, :1] if image.ndim >= 2 else image)  # raises the shape or dtype error
    return image


def _run_tile(run, image: np.ndarray, y: int, x: int, tile: tuple[int, int], mode: str):
    """`run` on the tile at `(y, x)`, padded by `mode` to `tile` where the image ends."""
    th, tw = tile
    crop = to_float_rgb(image[y : y + th, x : x + tw])
    if crop.shape[:2] != (th, tw):
        crop = pad_to(crop, th, tw, mode)
    out = np.asarray(run(crop), np.float32)
    if out.ndim == 2:
        out = out[..., None]
    if out.shape[:2] != (th, tw):
        raise ValueError(f"run returned {out.shape} for a {th} x {tw} tile")
    return out


def _drop_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` less its first `rows` rows, zero rows added at the bottom (same shape)."""
    rest = np.zeros_like(array)
    rest[: array.shape[0] - rows] = array[rows:]
    return rest


def tile_and_blend(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: tuple[int, int],
    overlap: int,
    sink: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray | None:
    """Applies `run` (one tile `(th, tw, 3) -> (th, tw, C)`) to an image of any size.

    An image shorter than the tile along an axis is padded by `pad_to`
    (bottom and right) and cropped back. Tiles are converted to float32 RGB
    one at a time (`to_float_rgb`), so a uint8 image is never held in float.

    Args:
        run: function of one float32 tile of exactly `tile` size, returning
            an array of the same height and width.
        image: RGB, RGBA or grayscale; uint8, uint16 or float in [0, 1].
        tile: `(height, width)` of the tiles.
        overlap: minimum overlap of neighbouring tiles, in pixels (reduced
            to less than the tile where needed).
        sink: if given, called as `sink(row, band)` with each finished band
            of float32 rows `(rows, W, C)` starting at image row `row`, top
            to bottom, and nothing is returned: the caller converts the bands
            (to uint8, say) without a float copy of the whole image.

    Returns:
        float32 `(H, W, C)`: the blended outputs (None when `sink` is given).
    """
    image = _checked_image(image)
    th, tw = (int(t) for t in tile)
    h, w = image.shape[:2]
    height, width = max(h, th), max(w, tw)
    mode = pad_mode(h, w, height - h, width - w)
    overlap = max(0, min(int(overlap), th - 1, tw - 1))
    result = None

    def emit(row: int, band: np.ndarray) -> None:
        nonlocal result
        band = band[: max(0, h - row), :w]
        if not band.shape[0]:
            return
        if sink is not None:
            sink(row, band)
            return
        if result is None:
            result = np.empty((h, w, band.shape[-1]), np.float32)
        result[row : row + band.shape[0]] = band

    xs = positions(width, tw, overlap)
    ramps_x = [ramp(tw, x, width, overlap) for x in xs]
    total = weights = None
    top = 0  # image row of total[0]
    for y in positions(height, th, overlap):
        if total is not None and y > top:
            # Rows above this tile row are final: hand them on, keep the rest.
            emit(top, total[: y - top] / weights[: y - top])
            total, weights, top = _drop_rows(total, y - top), _drop_rows(weights, y - top), y
        wy = ramp(th, y, height, overlap)
        for x, wx in zip(xs, ramps_x):
            out = _run_tile(run, image, y, x, (th, tw), mode)
            if total is None:
                total = np.zeros((th, width, out.shape[-1]), np.float32)
                weights = np.zeros((th, width, 1), np.float32)
            weight = (wy[:, None] * wx[None, :])[..., None]
            total[:, x : x + tw] += out * weight
            weights[:, x : x + tw] += weight
    emit(top, total / weights)
    return result


def blend_to_uint8(
    run: Callable, image: np.ndarray, tile: tuple[int, int], overlap: int, attention: bool = False
):
    """`tile_and_blend` of a derainer into uint8 RGB, band by band (no float image is held).

    Args:
        run: one float32 tile -> `(th, tw, 3)` derained, with the attention
            map as a fourth channel when `attention`.
        image: RGB, RGBA or grayscale; uint8, uint16 or float in [0, 1].
        tile: `(height, width)` of the tiles.
        overlap: minimum overlap of neighbouring tiles, in pixels.
        attention: also return the blended fourth channel, the attention map.

    Returns:
        uint8 RGB `(H, W, 3)`, or `(that, float32 (H, W) attention)`.

    Example:
        >>> out = blend_to_uint8(lambda t: t, np.zeros((50, 70, 3)), (32, 32), 8)
        >>> out.shape, out.dtype
        ((50, 70, 3), dtype('uint8'))
    """
    image = _checked_image(image)
    h, w = image.shape[:2]
    output = np.empty((h, w, 3), np.uint8)
    attention_map = np.empty((h, w), np.float32) if attention else None

    def sink(row: int, band: np.ndarray) -> None:
        output[row : row + band.shape[0]] = to_uint8(band[..., :3])
        if attention_map is not None:
            attention_map[row : row + band.shape[0]] = band[..., 3]

    tile_and_blend(run, image, tile, overlap, sink=sink)
    return (output, attention_map) if attention else output
