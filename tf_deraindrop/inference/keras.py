"""Deraining images of any size with a generator, and loading generators from files."""

from __future__ import annotations

import numpy as np

from tf_deraindrop.inference.tiling import blend_to_uint8, choose_tile, pad_to
from tf_deraindrop.models import Generator
from tf_deraindrop.utils.images import to_float_rgb, to_uint8

#: Default `max_pixels` of `derain`: larger images go through the generator in
#: tiles of at most this many pixels. The generator takes about 1.3 KB of
#: memory a pixel on the CPU, so a tile of 1 MP peaks near 2 GB of memory
#: with TensorFlow's own, whatever the image's size (`benchmarks/bench_tiling.py`).
DEFAULT_MAX_PIXELS = 1024 * 1024

#: Default overlap of neighbouring tiles, in pixels. The generator's dilated
#: convolutions see far (a receptive field of several hundred pixels), but
#: the output depends mostly on the nearest; with this overlap, blended
#: tiles stay within `benchmarks/bench_tiling.py`'s PSNR of a whole pass.
DEFAULT_OVERLAP = 128


def pad_to_multiple(image: np.ndarray, multiple: int = 4) -> np.ndarray:
    """Pads `(H, W, C)` at the bottom and right by reflection to multiples of `multiple`.

    The authors' script crops the image instead, losing up to three rows and
    columns; reflecting keeps every pixel and the border statistics natural.
    Images too small to reflect (a side of 1 or 2) are padded symmetrically
    (`tiling.pad_to`, the rule tiles use too).
    """
    h, w = image.shape[:2]
    return pad_to(image, h + (-h) % multiple, w + (-w) % multiple)


def _check_tile(tile, overlap: int) -> tuple[int, int]:
    th, tw = (int(t) for t in tile)
    if th < 4 or tw < 4 or th % 4 or tw % 4:
        raise ValueError(f"tile sides must be multiples of 4 (at least 4), got {th} x {tw}")
    if overlap < 0:
        raise ValueError(f"overlap must be at least 0, got {overlap}")
    return th, tw


def derain(
    generator: Generator,
    image: np.ndarray,
    return_attention: bool = False,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    tile: tuple[int, int] | None = None,
    overlap: int | None = None,
    precision: str | None = None,
):
    """Removes raindrops from one image of any size, in bounded memory.

    An image of at most `max_pixels` (once padded to multiples of 4) goes
    through the generator in one pass. A larger one is covered with
    overlapping tiles of at most `max_pixels` (`tiling.choose_tile`: the
    fewest pixels of work), and the overlaps are blended with linear ramps;
    the result stays close to a whole pass (`benchmarks/bench_tiling.py`),
    and the memory is that of one tile whatever the image's size.

    Args:
        generator: a `Generator` (trained, imported or loaded).
        image: RGB, RGBA or grayscale; uint8, uint16 or float in [0, 1]; any size.
        return_attention: also return the final attention map `A_N`, float32
            `(H, W)` (not clipped: the authors' map has no sigmoid).
        max_pixels: the largest image (and tile) run in one pass; None for
            no limit (memory grows with the image: about 13 GB at 4000 x 3000).
        tile: `(height, width)` of the tiles (multiples of 4) instead of a
            size chosen from `max_pixels`; an image smaller than the tile is
            padded to it, as `LiteDerainer` pads to its model's size.
        overlap: overlap of neighbouring tiles in pixels (`DEFAULT_OVERLAP`).
        precision: `"float32"`, `"bfloat16"` (a cast copy of the weights, cached)
            or `"auto"` (bfloat16 where the hardware runs it natively and the
            generator's output stays close, `tf_deraindrop.inference.precision`); None
            runs the generator in its own dtype policy.

    Returns:
        uint8 RGB `(H, W, 3)` of the input's size, or `(image, attention)`.

    Raises:
        ValueError: an array that is not an image, or a bad `tile`/`max_pixels`.

    Example:
        >>> clean = derain(generator, rainy)  # doctest: +SKIP
        >>> clean = derain(generator, photo_4000x3000, max_pixels=2_000_000)  # doctest: +SKIP
    """
    image = np.asarray(image)
    if precision is not None:
        from tf_deraindrop.inference.precision import resolve_generator

        generator = resolve_generator(generator, precision, sample=image).model
    overlap = DEFAULT_OVERLAP if overlap is None else int(overlap)
    tile = _check_tile(tile, overlap) if tile is not None else _tile_for(image, max_pixels, overlap)
    if tile is None:
        return _derain_whole(generator, image, return_attention)

    def run(crop: np.ndarray) -> np.ndarray:
        result = generator.predict_on_batch(crop[None])
        out = np.asarray(result["outputs"][-1])[0]
        if return_attention:
            out = np.concatenate([out, np.asarray(result["attention"][-1])[0]], axis=-1)
        return out

    return blend_to_uint8(run, image, tile, overlap, attention=return_attention)


def _tile_for(image: np.ndarray, max_pixels: int | None, overlap: int) -> tuple[int, int] | None:
    """The tiles `derain` covers `image` with; None for one pass over the whole image."""
    if image.ndim < 2:
        to_float_rgb(image)  # raises the shape error
    h, w = image.shape[:2]
    padded = (h + (-h) % 4) * (w + (-w) % 4)
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be positive (or None), got {max_pixels}")
    if max_pixels is None or padded <= max_pixels:
        return None
    return choose_tile(h, w, int(max_pixels), overlap)


def _derain_whole(generator: Generator, image: np.ndarray, return_attention: bool):
    rgb = to_float_rgb(image)
    h, w = rgb.shape[:2]
    padded = pad_to_multiple(rgb)[None]
    result = generator.predict_on_batch(padded)
    output = to_uint8(np.asarray(result["outputs"][-1])[0, :h, :w])
    if return_attention:
        return output, np.asarray(result["attention"][-1])[0, :h, :w, 0]
    return output


class KerasDerainer:
    """A Keras generator at a chosen precision, behind the `Derainer` interface.

    Args:
        generator: a built `Generator` or `LiteGenerator`.
        precision: `auto`, `float32`, `bfloat16`, or None to run it as it is
            (see `tf_deraindrop.inference.precision.resolve_generator`).
        **derain_options: passed to `derain` (`max_pixels`, `tile`, `overlap`).

    Example:
        >>> derainer = KerasDerainer(generator, precision="float32")  # doctest: +SKIP
        >>> clean = derainer.derain(rainy_uint8_rgb)  # doctest: +SKIP
    """

    has_attention = True

    def __init__(self, generator, precision: str | None = "auto", **derain_options):
        from tf_deraindrop.inference.precision import resolve_generator

        self.resolved = resolve_generator(generator, precision)
        self.generator = self.resolved.model
        self.derain_options = derain_options
        self.engine = f"Keras, {self.resolved}"

    def derain(self, image: np.ndarray, return_attention: bool = False):
        """Like `derain(generator, image, ...)` with this derainer's model and options."""
        return derain(
            self.generator, image, return_attention=return_attention, **self.derain_options
        )
