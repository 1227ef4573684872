"""What an export did (`ExportReport`), and a model that failed verification kept aside."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tf_deraindrop.export.convert import WEIGHT_BYTES
from tf_deraindrop.export.errors import VerificationFailed

if TYPE_CHECKING:
    from tf_deraindrop.export.analysis import DelegateCoverage
    from tf_deraindrop.export.verify import Verification


@dataclass
class ExportReport:
    """What `export_tflite` did."""

    path: str
    mode: str
    size: int
    weight_bytes: int
    ops: Counter
    xnnpack: DelegateCoverage
    seconds: float
    calibration: str = ""
    verification: Verification | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def measure(cls, path: str, written: str, mode: str, parameters: int, seconds: float):
        """The report on the model at `written` (to become `path`): its size, ops and coverage."""
        from tf_deraindrop.export.analysis import op_counts, xnnpack_coverage

        return cls(
            path=path,
            mode=mode,
            size=os.path.getsize(written),
            weight_bytes=parameters * WEIGHT_BYTES[mode],
            ops=op_counts(written),
            xnnpack=xnnpack_coverage(written),
            seconds=seconds,
        )

    @property
    def size_ratio(self) -> float:
        return self.size / self.weight_bytes

    def lines(self) -> list[str]:
        ops = ", ".join(f"{name} {count}" for name, count in self.ops.most_common())
        lines = [
            f"Wrote {self.path}: {self.size / 1e6:.2f} MB, {self.size_ratio:.3f} x the weights' "
            f"own {self.weight_bytes / 1e6:.2f} MB ({WEIGHT_BYTES[self.mode]} B per weight, "
            f"mode {self.mode}); converted in {self.seconds:.1f} s",
            f"Ops ({sum(self.ops.values())}): {ops}",
            f"XNNPACK delegate: {self.xnnpack}",
        ]
        if self.calibration:
            lines.insert(0, self.calibration)
        if self.verification is not None:
            lines.append(f"Verification against the Keras float generator: {self.verification}")
        return lines + self.notes


def reject(report: ExportReport, partial: str, output: str, log) -> None:
    """Keeps a model that failed verification as `<output>.rejected`, logs the report, raises.

    Raises:
        VerificationFailed: always, saying where the model is.
    """
    rejected = output + ".rejected"
    os.replace(partial, rejected)
    report.path = rejected
    for line in report.lines():
        log(line)
    raise VerificationFailed(
        f"verification failed: {report.verification}. The model is kept as "
        f"{rejected}; lower the bar with --min-psnr if this is expected."
    )
