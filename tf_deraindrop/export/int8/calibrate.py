"""int8 calibration with TensorFlow's own kernels: activation ranges in, fake-quant nodes out.

The order of an int8 export's calibration (`fixed_range_graph`):

1. the ranges of every quantized tensor, measured on the samples
   (`tf_deraindrop.export.int8.ranges`), and cut where values beyond them
   cannot change the int8 result (`tf_deraindrop.export.int8.limits`);
2. in the same pass, what evening out the channels of every tensor whose
   scale can move between convolutions needs
   (`tf_deraindrop.export.int8.equalization`), kept where int8 simulated on
   the samples (`tf_deraindrop.export.int8.simulate`) says it helps;
3. each bias corrected for its int8 kernel's mean error
   (`tf_deraindrop.export.int8.bias_correction`);
4. the ranges written into the graph as fake-quant nodes
   (`tf_deraindrop.export.int8.fake_quant`).

Example:
    >>> frozen = freeze(generator, 480, 720)  # doctest: +SKIP
    >>> graph = fixed_range_graph(generator, 480, 720, samples)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tf_deraindrop.export.frozen import FrozenGraph, freeze
from tf_deraindrop.export.int8.bias_correction import bias_corrected
from tf_deraindrop.export.int8.equalization import equalized_ranges
from tf_deraindrop.export.int8.fake_quant import FakeQuantGraph
from tf_deraindrop.export.int8.limits import clip_output_range, relu_sum_ranges, saturated_ranges
from tf_deraindrop.export.int8.ranges import Ranges, record_ranges
from tf_deraindrop.export.int8.simulate import simulated_errors

#: Calibration samples `calibrated` simulates int8 on to decide on equalization.
CHOICE_SAMPLES = 2

#: How much lower the int8-simulated error of the equalized graph must be
#: for `calibrated` to keep it (0.46 dB): the samples are the ones the
#: ranges come from, and a small gain on them was a loss on a held-out
#: photo (a trained generator at 64 x 96: +0.4 dB on them, -1.1 dB held out).
EQUALIZED_GAIN = 0.9


def calibrated(
    frozen: FrozenGraph,
    samples: Sequence[np.ndarray],
    precision: str = "auto",
    equalize: bool | None = None,
    progress: bool = False,
):
    """`frozen` (channel-equalized where that helps) and its int8 ranges measured on `samples`.

    The ranges are the min and max (as the converter's calibrator), those
    of the sigmoids' and tanhs' inputs clipped where the int8 output
    saturates (`saturated_ranges`), the addends of a ReLU'd sum cut where
    the sum is 0 anyway (`relu_sum_ranges`), the derained image's cut to
    [0, 1] (`clip_output_range`).

    Equalization (`tf_deraindrop.export.int8.equalization`) first brings the channels of each
    tensor that ReLUs, additions and convolutions allow to one range (the
    float graph computes the same), measured in the same pass. It lifts
    the activations' int8 precision but coarsens the weights of a channel
    it lifts (the next kernel's input channel shrinks and keeps its output
    channel's step): +2.2 dB on the random-weight generator, -1.5 dB on a
    trained one, at 480 x 720. So with `equalize=None` (the default) both
    graphs are simulated in int8 on the first `CHOICE_SAMPLES` samples
    (`tf_deraindrop.export.int8.simulate`) and the equalized one is kept only if its
    error is below `EQUALIZED_GAIN` times the other's; `True` or `False`
    forces it.

    Returns:
        `(graph, values, recorded, scales)`: the graph to convert, its
        ranges, the `Ranges` of the run and the equalization's scales
        (empty if not equalized).
    """

    if equalize is False:
        recorded = record_ranges(frozen, samples, precision, progress=progress)
        return frozen, _limited(frozen, recorded.values), recorded, []
    graph, values, recorded, scales = equalized_ranges(
        frozen, samples, precision, progress=progress
    )
    values = _limited(graph, values)
    if equalize is None and scales:
        plain = _limited(frozen, recorded.values)
        chosen = list(samples[:CHOICE_SAMPLES])
        without, with_ = simulated_errors(frozen, [(frozen, plain), (graph, values)], chosen)
        if with_ > EQUALIZED_GAIN * without:
            return frozen, plain, recorded, []
    return graph, values, recorded, scales


def _limited(frozen: FrozenGraph, values: dict) -> dict:
    """`values` cut by `tf_deraindrop.export.int8.limits` (see `calibrated`)."""
    values = relu_sum_ranges(frozen, saturated_ranges(frozen, values))
    return clip_output_range(frozen, values)


#: Calibration samples the bias correction takes its channel means from (the
#: first ones): the means settle within a few photos, and each costs a float32
#: run of the graph (2 s at 480 x 720 on 2 cores).
BIAS_SAMPLES = 4


def fixed_range_graph(
    generator,
    height: int,
    width: int,
    samples: Sequence[np.ndarray],
    precision: str = "auto",
    progress: bool = False,
    equalize: bool | None = None,
    correct_biases: bool = True,
) -> tuple[FakeQuantGraph, Ranges]:
    """The generator's export graph with int8 ranges measured on `samples` in TensorFlow.

    See `calibrated` for the ranges and `equalize`. With `correct_biases`,
    each convolution's bias then absorbs the mean error of its int8 kernel
    (`tf_deraindrop.export.int8.bias_correction`, on the first `BIAS_SAMPLES` samples): at
    480 x 720, +1.0 dB from float on a held-out photo for a trained
    generator and for a random one (`benchmarks/bench_calibration.py`).

    Example:
        >>> graph, ranges = fixed_range_graph(generator, 480, 720, samples)  # doctest: +SKIP
        >>> write_saved_model(graph, "saved_model", 480, 720)  # doctest: +SKIP
    """
    frozen, values, recorded, scales = calibrated(
        freeze(generator, height, width), samples, precision, equalize, progress
    )
    if correct_biases:
        frozen = bias_corrected(frozen, samples[:BIAS_SAMPLES])
    return FakeQuantGraph(frozen, values, scales), recorded
