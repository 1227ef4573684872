"""Checking an export: the `.tflite` against the Keras float generator, PSNR per sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Lowest PSNR (dB, outputs clipped to [0, 1], peak 1) against the Keras
#: float generator that an export may have on any verification sample.
#: Measured with benchmarks/bench_export.py on He-initialised random
#: generators (4 seeds at 64x96, 2 at 128x192, the worst seed at 480x720)
#: on the real photos: float32 >= 118 dB (uint8 I/O: rounding caps it near
#: 59), float16 62.7 to 76.7, dynamic 30.9 to 42.4, int8 26.1 to 37.7 (the
#: lowest at 480x720). Each threshold sits about 6 dB under the lowest value
#: (float16 and float32 well under, for uint8 I/O); a broken conversion (a
#: wrong channel order, a collapsed calibration range) scores under 15 dB.
DEFAULT_MIN_PSNR = {"none": 50.0, "float16": 45.0, "dynamic": 24.0, "int8": 20.0}


@dataclass
class Verification:
    """PSNR (dB) and max absolute error per verification sample, and the verdict."""

    psnr: list[float]
    max_error: list[float]
    threshold: float
    source: str

    @property
    def passed(self) -> bool:
        return min(self.psnr) >= self.threshold

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"PSNR min {min(self.psnr):.2f} dB, mean {np.mean(self.psnr):.2f} dB, "
            f"max error {max(self.max_error):.3g} over {len(self.psnr)} samples "
            f"({self.source}); threshold {self.threshold:g} dB: {verdict}"
        )


def verify(
    path: str,
    generator,
    samples: list[np.ndarray],
    threshold: float,
    source: str,
    progress: bool = True,
) -> Verification:
    """Runs the `.tflite` and the Keras float generator on `samples` and compares outputs."""
    from tqdm import tqdm

    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.metrics import psnr
    from tf_deraindrop.models.dtype import float32_generator
    from tf_deraindrop.utils.images import to_uint8

    derainer = LiteDerainer(path)
    reference = float32_generator(generator)
    psnrs, errors = [], []
    for sample in tqdm(samples, desc="verify", unit="image", disable=not progress, leave=False):
        if derainer.input_dtype == np.uint8:
            sample = to_uint8(sample).astype(np.float32) / 255.0  # both see the same pixels
        out = derainer.run_tile(sample)
        expected = np.asarray(reference(sample[None], training=False)["outputs"][-1])[0]
        psnrs.append(psnr(out, expected))
        errors.append(float(np.max(np.abs(np.clip(out, 0, 1) - np.clip(expected, 0, 1)))))
    return Verification(psnrs, errors, threshold, source)
