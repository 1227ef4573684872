"""What an int8 export converts: the graph, its representative dataset (if any), a summary.

Three ways to the activation ranges, chosen by `tf_deraindrop.export.tflite`'s flags:

* `--calibrator converter`: the generator itself, with a representative
  dataset for the TFLite converter's calibrator;
* `--calibrator tensorflow` (the default): the ranges measured in
  TensorFlow and fixed in the graph (`tf_deraindrop.export.int8.calibrate`), no dataset,
  after the channels of every tensor that allows it are brought to one
  range (`tf_deraindrop.export.int8.equalization`);
* with `--qat-steps N`: the same graph fine-tuned with int8 simulated
  first (`tf_deraindrop.export.int8.qat`).

A generator with a `stream` signature (a `LiteGenerator`) gets that
signature's ranges too (`tf_deraindrop.export.int8.stream.int8_stream`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tf_deraindrop.export.int8.options import CALIBRATORS, EQUALIZE, Int8Conversion, Int8Options


def int8_calibration(
    generator,
    samples: Sequence[np.ndarray],
    options: Int8Options | None = None,
    *,
    qat_images: Sequence[np.ndarray] = (),
    progress: bool = False,
) -> Int8Conversion:
    """What `export_tflite` converts for int8, the `stream` signature's ranges included.

    Args:
        generator: the built generator.
        samples: float32 `(H, W, 3)` calibration images at the export size.
        options: the calibrator, equalization and fine-tuning (default `Int8Options()`).
        qat_images: rainy images to fine-tune on (with `options.qat_steps`).
        progress: show progress bars.

    Raises:
        ExportError: an unknown calibrator.

    Example:
        >>> conversion = int8_calibration(generator, samples, Int8Options())  # doctest: +SKIP
        >>> print(conversion.summary)  # doctest: +SKIP
    """
    from tf_deraindrop.export.errors import ExportError
    from tf_deraindrop.export.int8.stream import int8_stream

    options = options or Int8Options()
    if options.calibrator not in CALIBRATORS:
        raise ExportError(
            f"--calibrator {options.calibrator}: choose one of {', '.join(CALIBRATORS)}"
        )
    equalize = EQUALIZE[options.equalize]
    if options.calibrator == "converter":
        from tf_deraindrop.export.convert import representative_dataset

        calibrated = Int8Conversion(
            generator,
            representative_dataset(samples, progress),
            "; the converter calibrates",
        )
    elif options.qat_steps:
        calibrated = _fine_tuned(generator, samples, qat_images, options, progress, equalize)
    else:
        calibrated = _fixed_ranges(generator, samples, progress, equalize)
    return Int8Conversion(
        *int8_stream(
            generator, calibrated, samples, options.calibrator, options.qat_steps, progress
        )
    )


def _fixed_ranges(generator, samples, progress: bool, equalize: bool | None) -> Int8Conversion:
    from tf_deraindrop.export.int8.calibrate import fixed_range_graph

    height, width = np.shape(samples[0])[:2]
    graph, ranges = fixed_range_graph(
        generator, height, width, samples, progress=progress, equalize=equalize
    )
    return Int8Conversion(
        graph,
        None,
        f"; ranges of {len(ranges.values)} tensors measured in TensorFlow ({ranges.precision}), "
        f"{ranges.seconds_per_sample:.2f} s per sample; "
        f"{_equalization(graph.scales, equalize)}; biases corrected for the int8 kernels",
    )


def _equalization(scales, equalize: bool | None) -> str:
    if scales:
        tensors = sum(len(group.tensors) for group, _ in scales)
        return f"channels equalized in {len(scales)} groups of tensors ({tensors} tensors)"
    if equalize is False:
        return "channels not equalized (--equalize off)"
    return "channels not equalized (no group to scale, or not closer to float in simulated int8)"


def _fine_tuned(
    generator, samples, images, options: Int8Options, progress: bool, equalize: bool | None
) -> Int8Conversion:
    from tf_deraindrop.export.int8.qat import DEFAULT_CROP, fine_tune

    height, width = np.shape(samples[0])[:2]
    graph, report = fine_tune(
        generator,
        height,
        width,
        samples,
        images,
        options.qat_steps,
        crop=options.qat_crop or DEFAULT_CROP,
        range_learning_rate=options.qat_range_lr,
        progress=progress,
        equalize=equalize,
    )
    return Int8Conversion(graph, None, f"; ranges measured in TensorFlow\n{report}")
