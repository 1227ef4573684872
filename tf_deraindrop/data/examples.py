"""The per-example graph: decoding, the crop shared by the three images, the mask.

The mask `M` is read from `mask/` where a pair has one; otherwise it is
computed from the pair by `tf_deraindrop.data.masks.compute_mask` (the one
implementation of the rule) on the cropped window plus a margin wide enough
for its morphology, which gives exactly the mask of the full image, cropped.
A training crop and flip depend only on the run's seed and the example's
index in the stream, so a resumed run sees the crops an uninterrupted one
would.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_deraindrop.data.masks import compute_mask
from tf_deraindrop.utils.images import read_image, to_uint8

#: Formats `tf.io.decode_image` reads natively; anything else is decoded by PIL.
TF_DECODABLE = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _mask_margin(mask_options: dict) -> int:
    # Closing then opening with squares of side c and o moves information by at
    # most 2 * (c // 2) + 2 * (o // 2) pixels; beyond that the crop's mask is
    # exactly the full image's.
    margin = 0
    for key in ("close_size", "open_size"):
        size = int(mask_options.get(key) or 0)
        if size > 1:
            margin += 2 * (size // 2)
    return margin + (2 if margin else 0)


def _make_mask_fn(mask_threshold: float, mask_options: dict):
    def mask_fn(rainy, clean):
        mask = compute_mask(rainy, clean, threshold=mask_threshold, **mask_options)
        return np.asarray(mask, dtype=np.uint8).reshape(mask.shape[0], mask.shape[1], 1)

    return mask_fn


def _pil_decode(channels: int):
    def decode(path):
        image = to_uint8(read_image(path.decode()))
        return image[..., :1] if channels == 1 else image

    return decode


class ExampleGraph:
    """The per-example graph functions, shared by the pair and TFRecord sources.

    Args:
        crop_size: side of the square crop, or None for whole images cut to
            multiples of 4.
        training: random crop and flip (from `seed` and the example's index)
            instead of a centre crop.
        seed: the run's seed.
        mask_threshold, mask_options: `masks.compute_mask` arguments for
            pairs without a stored mask.
        native: every file is in a format `tf.io.decode_image` reads
            (`TF_DECODABLE`); otherwise PIL decodes them.
        pil_paths: files PIL decodes even when `native` (those whose EXIF
            orientation is not upright: TF's decoders ignore it).

    Example:
        >>> graph = ExampleGraph(224, True, 0, 30 / 255, {}, native=True)
        >>> rainy, clean, mask = graph.crop_example(0, *graph.load_pair(r, c, b""))
    """

    def __init__(
        self, crop_size, training, seed, mask_threshold, mask_options, native, pil_paths=()
    ):
        self.crop = crop_size
        self.training = training
        self.seed = seed
        self.margin = _mask_margin(mask_options)
        self.mask_fn = _make_mask_fn(mask_threshold, mask_options)
        self.native = native
        self.pil_paths = tuple(pil_paths)

    # Decoding: uint8 images, a (0, 0, 1) placeholder where no mask is stored.

    def decode_bytes(self, contents, channels):
        # decode_image's JPEG path uses the fast integer DCT, up to 15 levels
        # off the PIL decode that evaluation and the mask tools see; the
        # accurate DCT gives PIL's pixels exactly.
        image = tf.cond(
            tf.io.is_jpeg(contents),
            lambda: tf.io.decode_jpeg(contents, channels=channels, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(contents, channels=channels, expand_animations=False),
        )
        return tf.ensure_shape(image, [None, None, channels])

    def decode_file(self, path, channels):
        def pil():
            image = tf.numpy_function(_pil_decode(channels), [path], tf.uint8, stateful=False)
            return tf.ensure_shape(image, [None, None, channels])

        if not self.native:
            return pil()
        if self.pil_paths:
            by_pil = tf.reduce_any(tf.equal(path, tf.constant(self.pil_paths)))
            return tf.cond(by_pil, pil, lambda: self.decode_bytes(tf.io.read_file(path), channels))
        return self.decode_bytes(tf.io.read_file(path), channels)

    def binarize(self, mask):
        return tf.cast(mask > 127, tf.uint8)

    def load_pair(self, rainy_path, clean_path, mask_path):
        rainy = self.decode_file(rainy_path, 3)
        clean = self.decode_file(clean_path, 3)
        mask = tf.cond(
            tf.strings.length(mask_path) > 0,
            lambda: self.binarize(self.decode_file(mask_path, 1)),
            lambda: tf.zeros([0, 0, 1], tf.uint8),
        )
        return rainy, clean, mask

    # Cropping: one window for the three images; the mask is computed on the
    # window plus a margin where it is not stored.

    def crop_example(self, index, rainy, clean, mask):
        shape = tf.shape(rainy)
        h, w = shape[0], shape[1]
        if self.crop is None:
            ch, cw = h - h % 4, w - w % 4
            oy = ox = tf.constant(0, tf.int32)
            flip = tf.constant(False)
        else:
            ch = cw = tf.constant(self.crop, tf.int32)
            if self.training:
                seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(index, tf.int64)])
                u = tf.random.stateless_uniform([3], seed=seed)
                oy = tf.minimum(tf.cast(u[0] * tf.cast(h - ch + 1, tf.float32), tf.int32), h - ch)
                ox = tf.minimum(tf.cast(u[1] * tf.cast(w - cw + 1, tf.float32), tf.int32), w - cw)
                flip = u[2] < 0.5
            else:
                oy, ox = (h - ch) // 2, (w - cw) // 2
                flip = tf.constant(False)

        def stored_mask():
            return mask[oy : oy + ch, ox : ox + cw]

        def computed_mask():
            y0 = tf.maximum(oy - self.margin, 0)
            x0 = tf.maximum(ox - self.margin, 0)
            y1 = tf.minimum(oy + ch + self.margin, h)
            x1 = tf.minimum(ox + cw + self.margin, w)
            window = tf.numpy_function(
                self.mask_fn,
                [rainy[y0:y1, x0:x1], clean[y0:y1, x0:x1]],
                tf.uint8,
                stateful=False,
            )
            window = tf.ensure_shape(window, [None, None, 1])
            return window[oy - y0 : oy - y0 + ch, ox - x0 : ox - x0 + cw]

        has_mask = tf.size(mask) > 0
        mask = tf.cond(has_mask, stored_mask, computed_mask)
        stacked = tf.concat(
            [rainy[oy : oy + ch, ox : ox + cw], clean[oy : oy + ch, ox : ox + cw], mask], axis=-1
        )
        stacked = tf.cond(flip, lambda: tf.reverse(stacked, axis=[1]), lambda: stacked)
        stacked = tf.cast(stacked, tf.float32)
        rainy_c = stacked[..., 0:3] / 255.0
        clean_c = stacked[..., 3:6] / 255.0
        mask_c = stacked[..., 6:7]
        static = [self.crop, self.crop] if self.crop is not None else [None, None]
        return (
            tf.ensure_shape(rainy_c, static + [3]),
            tf.ensure_shape(clean_c, static + [3]),
            tf.ensure_shape(mask_c, static + [1]),
        )
