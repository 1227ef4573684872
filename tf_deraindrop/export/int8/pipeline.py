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

#: `--calibrator` choices: ranges measured in TensorFlow (fixed-range
#: fake-quant nodes), or the TFLite converter's own calibrator.
CALIBRATORS = ("tensorflow", "converter")

#: `--equalize` choices and what `tf_deraindrop.export.int8.calibrate.calibrated` takes for them:
#: where int8 simulated on the calibration samples says it helps, always, never.
EQUALIZE = {"auto": None, "on": True, "off": False}


def check_equalize(quantize: str, calibrator: str, equalize: str) -> None:
    """Raises `ExportError` for an `--equalize` that cannot apply."""
    from tf_deraindrop.export.errors import ExportError

    if equalize not in EQUALIZE:
        raise ExportError(f"--equalize {equalize}: choose one of {', '.join(EQUALIZE)}")
    if equalize != "auto" and (quantize != "int8" or calibrator != "tensorflow"):
        raise ExportError(
            f"--equalize {equalize} sets the channel equalization of int8 ranges measured in "
            "TensorFlow: use it with --quantize int8 and --calibrator tensorflow"
        )


def int8_calibration(
    generator,
    samples: Sequence[np.ndarray],
    calibrator: str = "tensorflow",
    *,
    progress: bool = False,
    qat_images: Sequence[np.ndarray] = (),
    qat_steps: int = 0,
    qat_crop: int | None = None,
    qat_range_lr: float = 0.0,
    equalize: str = "auto",
) -> tuple:
    """What `export_tflite` converts for int8: `(source, representative dataset, summary)`.

    Args:
        generator: the built generator.
        samples: float32 `(H, W, 3)` calibration images at the export size.
        calibrator: one of `CALIBRATORS`.
        qat_images, qat_steps, qat_crop, qat_range_lr: fine-tune for
            `qat_steps` steps on crops of `qat_images` first, the ranges
            too at rate `qat_range_lr` (`tf_deraindrop.export.int8.qat.fine_tune`).
        equalize: one of `EQUALIZE` (channel equalization of the ranges
            measured in TensorFlow, `tf_deraindrop.export.int8.calibrate.calibrated`).

    Returns:
        `source` goes to `write_saved_model` in place of the generator; the
        representative dataset is None for fixed ranges; the summary ends the
        report's calibration line.

    Raises:
        ExportError: an unknown calibrator.
    """
    from tf_deraindrop.export.errors import ExportError
    from tf_deraindrop.export.int8.stream import int8_stream

    if calibrator not in CALIBRATORS:
        raise ExportError(f"--calibrator {calibrator}: choose one of {', '.join(CALIBRATORS)}")
    if calibrator == "converter":
        from tf_deraindrop.export.convert import representative_dataset

        calibrated = (
            generator,
            representative_dataset(samples, progress),
            "; the converter calibrates",
        )
    elif qat_steps:
        calibrated = _fine_tuned(
            generator,
            samples,
            qat_images,
            steps=qat_steps,
            crop=qat_crop,
            range_learning_rate=qat_range_lr,
            progress=progress,
            equalize=EQUALIZE[equalize],
        )
    else:
        calibrated = _fixed_ranges(generator, samples, progress, EQUALIZE[equalize])
    return int8_stream(generator, calibrated, samples, calibrator, qat_steps, progress)


def _fixed_ranges(generator, samples, progress: bool, equalize: bool | None) -> tuple:
    from tf_deraindrop.export.int8.calibrate import fixed_range_graph

    height, width = np.shape(samples[0])[:2]
    graph, ranges = fixed_range_graph(
        generator, height, width, samples, progress=progress, equalize=equalize
    )
    return (
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
    generator, samples, images, *, steps: int, crop, range_learning_rate, progress, equalize
):
    from tf_deraindrop.export.int8.qat import DEFAULT_CROP, fine_tune

    height, width = np.shape(samples[0])[:2]
    graph, report = fine_tune(
        generator,
        height,
        width,
        samples,
        images,
        steps,
        crop=crop or DEFAULT_CROP,
        range_learning_rate=range_learning_rate,
        progress=progress,
        equalize=equalize,
    )
    return graph, None, f"; ranges measured in TensorFlow\n{report}"
