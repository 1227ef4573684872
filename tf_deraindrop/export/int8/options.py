"""How an int8 export is calibrated: one set of options, checked in one place, and its result.

`Int8Options` travels from `deraindrop export`'s flags through
`export_tflite` to `int8_calibration`; `Int8Conversion` is what comes back:
the graph to convert, the representative dataset where the converter
calibrates, and the summary line of the export's report.

Kept free of TensorFlow, so that the command line checks its flags before
paying for the import.

Example:
    >>> options = Int8Options(calibrator="tensorflow", qat_steps=100, qat_dir="rainy/")
    >>> options.check("int8")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

#: `--calibrator` choices: ranges measured in TensorFlow (fixed-range
#: fake-quant nodes), or the TFLite converter's own calibrator.
CALIBRATORS = ("tensorflow", "converter")

#: `--equalize` choices and what `calibrate.calibrated` takes for them:
#: where int8 simulated on the calibration samples says it helps, always, never.
EQUALIZE = {"auto": None, "on": True, "off": False}


class Int8Conversion(NamedTuple):
    """What an int8 export converts.

    Attributes:
        source: goes to `write_saved_model` in place of the generator.
        dataset: the representative dataset for the converter's calibrator,
            None for fixed ranges.
        summary: the end of the report's calibration line.
    """

    source: Any
    dataset: Any
    summary: str


@dataclass(frozen=True)
class Int8Options:
    """The int8 calibration's settings (`deraindrop export`'s int8 flags).

    Attributes:
        calibrator: one of `CALIBRATORS`.
        samples: calibration samples (crops or resizes of the calibration photos).
        equalize: one of `EQUALIZE`: channel equalization of the ranges
            measured in TensorFlow.
        qat_steps: quantization-aware fine-tuning steps (0: calibrate only).
        qat_dir: rainy photos to fine-tune on (with `qat_steps`).
        qat_crop: side of the fine-tuning crops (None: `qat.DEFAULT_CROP`).
        qat_range_lr: also train the activations' ranges at this rate (0: they
            stay calibrated).
    """

    calibrator: str = "tensorflow"
    samples: int = 16
    equalize: str = "auto"
    qat_steps: int = 0
    qat_dir: str | None = None
    qat_crop: int | None = None
    qat_range_lr: float = 0.0

    def check(self, quantize: str) -> None:
        """Raises `ExportError` naming the flag for settings that cannot work together."""
        from tf_deraindrop.export.errors import ExportError

        if self.samples < 1:
            raise ExportError("--calibration-samples must be at least 1")
        if self.calibrator not in CALIBRATORS:
            raise ExportError(
                f"--calibrator {self.calibrator}: choose one of {', '.join(CALIBRATORS)}"
            )
        check_equalize(quantize, self.calibrator, self.equalize)
        check_qat_arguments(
            quantize, self.calibrator, self.qat_steps, self.qat_dir, self.qat_range_lr
        )


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


def check_qat_arguments(
    quantize: str, calibrator: str, steps: int, data_dir: str | None, range_lr: float = 0.0
) -> None:
    """Raises `ExportError` for `--qat-*`/`--data-dir` flags that cannot work together."""
    from tf_deraindrop.export.errors import ExportError

    if steps < 0:
        raise ExportError(f"--qat-steps {steps}: must be 0 or more")
    if not math.isfinite(range_lr) or range_lr < 0:
        raise ExportError(f"--qat-range-lr {range_lr}: must be 0 or more")
    if range_lr and not steps:
        raise ExportError("--qat-range-lr trains ranges while fine-tuning: give --qat-steps N too")
    if steps and not data_dir:
        raise ExportError("--qat-steps needs --data-dir (a folder of rainy photos to fine-tune on)")
    if data_dir and not steps:
        raise ExportError("--data-dir is for fine-tuning: give --qat-steps N too")
    if steps and quantize != "int8":
        raise ExportError("--qat-steps fine-tunes for int8: use it with --quantize int8")
    if steps and calibrator != "tensorflow":
        raise ExportError(
            f"--qat-steps with --calibrator {calibrator}: fine-tuning trains the fixed "
            "ranges of --calibrator tensorflow"
        )
