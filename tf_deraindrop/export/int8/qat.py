"""Quantization-aware fine-tuning of the export graph, before int8 conversion.

Calibration alone leaves int8 far from float where quantization error
compounds through the four recurrent steps (a random-weight generator lands
near 26 dB). Here the export graph is fine-tuned with int8 simulated:

* the weights of every convolution pass through a per-output-channel,
  symmetric fake quantization (what the converter does to them), and every
  activation through the fake quantization of its int8 range
  (`tf_deraindrop.export.int8.calibrate`: the same nodes the conversion reads);
* the target is the float model's own output on the same rainy crop, so no
  clean images are needed: the int8 model learns to compute what the float
  one computes, on the kind of images it will see;
* the loss is the output's squared error (clipped to [0, 1], as it is
  used) plus that of every quantized tensor against its float value, in
  units of its range: local targets keep the error from compounding;
* the weights are updated with Adam for `steps` steps on random crops, then
  written back into the graph at the export size, which converts like a
  calibrated one;
* with `range_learning_rate`, so are the activations' ranges, each through
  one scale that multiplies its calibrated min and max (the zero point
  kept), along the output error's gradient for learned step sizes
  (`tf_deraindrop.export.int8.qat_training.register_range_gradient`): the stock gradient of
  `FakeQuantWithMinMaxVars` reaches a range only from the values it clips,
  so it could only widen it, never trade clipping for finer steps. It is
  off by default: at 480 x 720 it gave the random-weight generator +0.7 dB
  and took 0.5 dB from a trained one, whose calibrated ranges already fit;
* training starts from the channel-equalized graph where equalization
  brings the int8 graph closer to float (`tf_deraindrop.export.int8.calibrate.calibrated`),
  with biases that take off the mean error of their int8-rounded kernels
  on the calibration samples (`tf_deraindrop.export.int8.bias_correction`);
* the learning rate decays to 0 over the steps (cosine): at a constant
  rate the last steps drift away from the best weights.

The fine-tuning works on the frozen TF graph (`tf_deraindrop.export.int8.calibrate.freeze`),
not on the Keras model: the Keras layers are left untouched, and what is
trained is exactly what is converted (split convolutions, sub-pixel
upsampling, the weights shared by the recurrent steps kept tied).

Example:
    >>> graph, report = fine_tune(generator, 480, 720, samples, rainy, steps=200)  # doctest: +SKIP
    >>> write_saved_model(graph, "saved_model", 480, 720)  # doctest: +SKIP
    >>> model = convert("saved_model", "int8")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tf_deraindrop.export.frozen import freeze
from tf_deraindrop.export.int8.bias_correction import bias_shifts, with_bias_shifts
from tf_deraindrop.export.int8.calibrate import calibrated
from tf_deraindrop.export.int8.equalization import with_channel_scales
from tf_deraindrop.export.int8.fake_quant import FakeQuantGraph
from tf_deraindrop.export.int8.options import Int8Options
from tf_deraindrop.export.int8.qat_graph import with_weights
from tf_deraindrop.export.int8.qat_training import Int8Training
from tf_deraindrop.export.samples import at_export_scale, random_crops

#: Defaults of `fine_tune` (and `tf_deraindrop.export.tflite --qat-*`).
DEFAULT_CROP = 256
DEFAULT_BATCH = 1
DEFAULT_LEARNING_RATE = 1e-5
DEFAULT_FEATURE_WEIGHT = 1.0
DEFAULT_RANGE_LEARNING_RATE = 0.0

#: The rate `--qat-range-lr` suggests (`fine_tune`'s `range_learning_rate`).
SUGGESTED_RANGE_LEARNING_RATE = 3e-3


@dataclass
class QatReport:
    """What `fine_tune` did.

    Attributes:
        steps: optimizer steps.
        seconds: time of the steps.
        losses: mean squared error of the int8-simulated output against the
            float output (both clipped to [0, 1]) per step.
        crop, batch: the training crops.
        weights: trained weight tensors (after tying the recurrent steps').
        calibration_seconds: time of the ranges.
        equalized: whether training started from the channel-equalized graph.
        ranges_trained: whether the activations' ranges were trained too.
    """

    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    crop: int = DEFAULT_CROP
    batch: int = DEFAULT_BATCH
    weights: int = 0
    calibration_seconds: float = 0.0
    equalized: bool = False
    ranges_trained: bool = False

    def loss_change(self, window: int = 20) -> tuple[float, float]:
        """Mean loss over the first and the last `window` steps."""
        w = max(1, min(window, len(self.losses) // 2 or 1))
        return float(np.mean(self.losses[:w])), float(np.mean(self.losses[-w:]))

    def __str__(self) -> str:
        first, last = self.loss_change()
        psnr = lambda mse: 10 * math.log10(1 / mse) if mse > 0 else float("inf")  # noqa: E731
        return (
            f"quantization-aware fine-tuning: {self.steps} steps of {self.batch} x "
            f"{self.crop}x{self.crop} crops in {self.seconds:.0f} s ({self.weights} weight "
            f"tensors, channels {'' if self.equalized else 'not '}equalized, "
            f"ranges {'trained' if self.ranges_trained else 'calibrated'}); "
            f"int8-simulated output vs float on the crops "
            f"{psnr(first):.1f} -> {psnr(last):.1f} dB"
        )


def fine_tune(
    generator,
    height: int,
    width: int,
    calibration_samples: Sequence[np.ndarray],
    images: Sequence[np.ndarray],
    steps: int,
    *,
    crop: int = DEFAULT_CROP,
    batch: int = DEFAULT_BATCH,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    feature_weight: float = DEFAULT_FEATURE_WEIGHT,
    range_learning_rate: float = DEFAULT_RANGE_LEARNING_RATE,
    seed: int = 0,
    equalize: bool | None = None,
    progress: bool = False,
) -> tuple[FakeQuantGraph, QatReport]:
    """Fine-tunes the generator's export graph with int8 simulated; returns it with its ranges.

    Args:
        generator: a built `Generator` or `LiteGenerator` (left unchanged).
        height, width: the export size.
        calibration_samples: float32 `(height, width, 3)` images for the
            ranges (`tf_deraindrop.export.int8.ranges.record_ranges`, then `saturated_ranges`).
        images: float32 rainy images of any size to crop training batches
            from, each first resized to just cover the export size.
        steps: optimizer steps (0: calibration only).
        crop: side of the square training crops (a multiple of 4; at most
            the export size).
        batch: crops per step.
        learning_rate: Adam's first step for the weights, lowered to 0 over
            the steps (cosine decay).
        feature_weight: weight of the loss on every quantized tensor against
            its float value (in units of its range), next to the output's.
        range_learning_rate: Adam's first step for the log of each
            activation range's scale, lowered like the weights' (0, the
            default: the calibrated ranges stay; `SUGGESTED_RANGE_LEARNING_RATE`
            where calibration is far from float).
        seed: crops and flips.
        equalize: channel equalization first (`tf_deraindrop.export.int8.calibrate.calibrated`:
            None keeps it where the int8-simulated output is closer to float).

    Returns:
        `(graph, report)`: a `FakeQuantGraph` at the export size, to convert
        like `tf_deraindrop.export.int8.calibrate`'s, and a `QatReport`.

    Raises:
        ValueError: bad sizes or steps, or no images.
    """
    from tqdm import tqdm

    if steps < 0:
        raise ValueError(f"steps must be at least 0, got {steps}")
    if not images:
        raise ValueError("quantization-aware fine-tuning needs rainy images")
    crop = min(crop, height, width)
    if crop < 8 or crop % 4:
        raise ValueError(f"crop must be a multiple of 4 and at least 8, got {crop}")

    full, values, ranges, scales = calibrated(
        freeze(generator, height, width), calibration_samples, equalize=equalize
    )
    report = QatReport(steps, 0.0, crop=crop, batch=batch, equalized=bool(scales))
    report.ranges_trained = bool(steps and range_learning_rate)
    report.calibration_seconds = ranges.seconds
    if steps == 0:
        return FakeQuantGraph(full, values, scales), report

    # Biases corrected for the kernels' int8 rounding first; the float
    # graph stays the target. (Corrected after training instead, the
    # correction undid what training had learned: -1 dB on a trained one.)
    shifts = bias_shifts(full, calibration_samples)
    full = with_bias_shifts(full, shifts)
    train = with_channel_scales(freeze(generator, crop, crop, batch), scales)
    start_graph = with_bias_shifts(train, shifts)
    training = Int8Training(
        train, values, batch, learning_rate, feature_weight, start_graph, range_learning_rate
    )
    report.weights = len(training.weights)
    images = [at_export_scale(image, height, width) for image in images]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for step in tqdm(range(steps), desc="qat", unit="step", disable=not progress, leave=False):
        # Cosine decay to 0: at a constant step, the last steps wander off
        # (the loss rose again after 100 steps at 1e-5).
        training.decay(0.5 * (1 + math.cos(math.pi * step / steps)))
        crops = random_crops(images, crop, batch, rng)
        report.losses.append(float(training.step(crops)))
    report.seconds = time.perf_counter() - start
    trained = with_weights(full, training.groups, [w.numpy() for w in training.weights])
    return FakeQuantGraph(trained, training.trained_ranges(), scales), report


def load_qat_images(options: Int8Options) -> list[np.ndarray]:
    """The photos of `options.qat_dir` (none without `qat_steps`); `ExportError` if unusable."""
    from tf_deraindrop.export.samples import read_images

    if not options.qat_steps:
        return []
    return read_images(list_data_dir(options.qat_dir), "fine-tuning")


def list_data_dir(data_dir: str) -> list[str]:
    """The images of `--data-dir`; `ExportError` naming the flag if there are none."""
    from tf_deraindrop.export.errors import ExportError
    from tf_deraindrop.export.samples import list_images

    try:
        return list_images(data_dir, "--data-dir")
    except ExportError as err:
        if "--data-dir" in str(err):
            raise
        raise ExportError(f"--data-dir {err}") from err
