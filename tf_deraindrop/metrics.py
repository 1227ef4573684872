"""PSNR and SSIM on the Y channel: the published protocol, in-graph versions, plain PSNR.

The protocol the Raindrop tables use (docs/architecture.md, section 8): the uint8 output and
the uint8 clean image are brought to luma `Y = 0.299 R + 0.587 G + 0.114 B`
(ITU-R BT.601, on 0..255, rounded to uint8), both cropped to multiples of 4,
then PSNR with peak 255 and `skimage.metrics.structural_similarity` with its
defaults (7 x 7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03) and
`data_range=255`.

`psnr_y` / `ssim_y` are that protocol on numpy arrays (use them for numbers
you report). `psnr_y_tf` / `ssim_y_tf` compute the same quantities inside a
TensorFlow graph on float batches in [0, 1] for `test_step` and TensorBoard.
They quantize to uint8 levels as `images.to_uint8` does, round Y the same
way, crop to multiples of 4 and use the same 7 x 7 uniform window, so the
only difference left is float32 instead of float64 arithmetic: they agree
with the protocol to about 1e-4 dB and 1e-5 SSIM (tested). `tf.image.ssim`
was not used because its 11 x 11 Gaussian window gives numbers a few
thousandths off the published ones. Validation in training measures crops,
not full images, so its numbers are not the test_a numbers either way.
"""

from __future__ import annotations

import numpy as np

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: skimage's SSIM defaults.
SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_uint8_pair(output: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    output = np.asarray(output)
    clean = np.asarray(clean)
    for name, image in (("output", output), ("clean", clean)):
        if image.dtype != np.uint8:
            raise TypeError(
                f"{name} must be uint8 (the protocol measures the saved 8-bit image); "
                f"got {image.dtype}. Convert with tf_deraindrop.utils.images.to_uint8."
            )
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"{name} must be RGB (H, W, 3); got shape {image.shape}.")
    if output.shape != clean.shape:
        raise ValueError(f"output {output.shape} and clean {clean.shape} differ in size.")
    return output, clean


def y_channel(image_uint8: np.ndarray) -> np.ndarray:
    """BT.601 luma of a uint8 RGB image, rounded to uint8, `(H, W)`."""
    rgb = np.asarray(image_uint8, dtype=np.float64)
    y = (
        rgb[..., 0] * LUMA_WEIGHTS[0]
        + rgb[..., 1] * LUMA_WEIGHTS[1]
        + rgb[..., 2] * LUMA_WEIGHTS[2]
    )
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def _protocol_y(output: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    output, clean = _check_uint8_pair(output, clean)
    h, w = output.shape[:2]
    h4, w4 = h - h % 4, w - w % 4
    if h4 < SSIM_WINDOW or w4 < SSIM_WINDOW:
        raise ValueError(
            f"Image of {h} x {w} is too small for the protocol "
            f"(at least {SSIM_WINDOW} x {SSIM_WINDOW} after cropping to multiples of 4)."
        )
    return y_channel(output[:h4, :w4]), y_channel(clean[:h4, :w4])


def _psnr_db(mse: float, peak: float) -> float:
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Plain PSNR in dB of two float images (any shape), both clipped to [0, peak].

    Not the published protocol (that is `psnr_y`): it compares model
    outputs with each other, for example an exported model with the Keras
    generator.

    Args:
        a, b: arrays of the same shape.
        peak: the largest value (1 for images in [0, 1]).

    Returns:
        PSNR with peak `peak`, computed in float64; `inf` when equal.

    Example:
        >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1)), 2)
        20.0
    """
    a = np.clip(np.asarray(a, np.float64), 0.0, peak)
    b = np.clip(np.asarray(b, np.float64), 0.0, peak)
    return _psnr_db(float(np.mean((a - b) ** 2)), peak)


def psnr_y(output_uint8: np.ndarray, clean_uint8: np.ndarray) -> float:
    """PSNR in dB on the Y channel, the published protocol.

    Args:
        output_uint8: uint8 RGB `(H, W, 3)`, the derained (or rainy) image.
        clean_uint8: uint8 RGB `(H, W, 3)`, the ground truth.

    Returns:
        PSNR with peak 255; `inf` for identical Y channels.

    Example:
        >>> a = np.zeros((8, 8, 3), np.uint8)
        >>> round(psnr_y(a, a + 1), 2)
        48.13
    """
    y_out, y_clean = _protocol_y(output_uint8, clean_uint8)
    mse = np.mean((y_out.astype(np.float64) - y_clean.astype(np.float64)) ** 2)
    return _psnr_db(float(mse), 255.0)


def ssim_y(output_uint8: np.ndarray, clean_uint8: np.ndarray) -> float:
    """SSIM on the Y channel, the published protocol (skimage defaults, `data_range=255`).

    Args:
        output_uint8: uint8 RGB `(H, W, 3)`.
        clean_uint8: uint8 RGB `(H, W, 3)`.

    Example:
        >>> a = np.full((16, 16, 3), 100, np.uint8)
        >>> ssim_y(a, a)
        1.0
    """
    from skimage.metrics import structural_similarity

    y_out, y_clean = _protocol_y(output_uint8, clean_uint8)
    return float(structural_similarity(y_out, y_clean, data_range=255))


# In-graph versions ---------------------------------------------------------


def _y_levels_tf(images):
    """Float RGB batch in [0, 1] -> Y on 0..255 as the protocol makes it, `(B, H, W, 1)`."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    # The protocol measures the saved uint8 image: quantize like to_uint8 does.
    levels = tf.floor(tf.clip_by_value(images, 0.0, 1.0) * 255.0 + 0.5)
    # float64 for the weighted sum so that rounding ties break as numpy's do.
    weights = tf.constant(LUMA_WEIGHTS, tf.float64)
    y = tf.reduce_sum(tf.cast(levels, tf.float64) * weights, axis=-1, keepdims=True)
    y = tf.cast(tf.round(y), tf.float32)
    shape = tf.shape(y)
    h4 = shape[1] - shape[1] % 4
    w4 = shape[2] - shape[2] % 4
    return y[:, :h4, :w4, :]


def psnr_y_tf(output, clean):
    """Per-example PSNR (dB) on the Y channel of float RGB batches in [0, 1].

    Quantizes to uint8 levels and rounds Y as the protocol does; identical
    images give `inf` (as `psnr_y`).

    Args:
        output: `(B, H, W, 3)` float, the derained batch.
        clean: `(B, H, W, 3)` float, the targets.

    Returns:
        float32 tensor `(B,)`.

    Example:
        >>> psnr_y_tf(output, clean)  # doctest: +SKIP
    """
    import tensorflow as tf

    y_out = _y_levels_tf(output)
    y_clean = _y_levels_tf(clean)
    mse = tf.reduce_mean(tf.square(y_out - y_clean), axis=[1, 2, 3])
    return 10.0 * tf.math.log(255.0**2 / mse) / tf.math.log(10.0)


def ssim_y_tf(output, clean):
    """Per-example SSIM on the Y channel of float RGB batches in [0, 1].

    skimage's definition: 7 x 7 uniform window over the valid region, sample
    covariance (`N / (N - 1)`), K1 = 0.01, K2 = 0.03, data range 255, after
    quantizing to uint8 levels and rounding Y. `tf.image.ssim` would use an
    11 x 11 Gaussian window and give numbers a few thousandths off the
    published ones, so the window is built here from `tf.nn.avg_pool2d`.

    Args:
        output: `(B, H, W, 3)` float in [0, 1].
        clean: `(B, H, W, 3)` float in [0, 1].

    Returns:
        float32 tensor `(B,)`.

    Example:
        >>> ssim_y_tf(output, clean)  # doctest: +SKIP
    """
    import tensorflow as tf

    # Centre both on a constant: the statistics are shift-invariant and
    # float32 loses less in E[x^2] - E[x]^2 near 0 than near 255.
    x = _y_levels_tf(output) - 128.0
    y = _y_levels_tf(clean) - 128.0
    n = float(SSIM_WINDOW * SSIM_WINDOW)

    def mean(t):
        return tf.nn.avg_pool2d(t, SSIM_WINDOW, strides=1, padding="VALID")

    ux, uy = mean(x), mean(y)
    cov_norm = n / (n - 1.0)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1 = (SSIM_K1 * 255.0) ** 2
    c2 = (SSIM_K2 * 255.0) ** 2
    # Shifting by 128 moved the means; the luminance term needs the true ones.
    mx, my = ux + 128.0, uy + 128.0
    s = ((2.0 * mx * my + c1) * (2.0 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return tf.reduce_mean(s, axis=[1, 2, 3])
