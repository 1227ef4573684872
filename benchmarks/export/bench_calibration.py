"""int8 calibration: the TFLite converter's calibrator against ranges measured in TensorFlow.

One run, side by side, at 480 x 720 on 2 threads, for each generator (a
trained one with `--weights`, and He-initialised random weights unless
`--no-random`):

* converter: `convert(..., representative_dataset)`, today's path. Its
  time per sample is read from the representative dataset itself: the time
  between the converter asking for the second sample and asking past the
  last, over the samples after the first.
* tensorflow: `tf_deraindrop.export.int8.calibrate` (ranges in TensorFlow, fake-quant nodes,
  converted without a dataset), with the ranges measured in bfloat16 (where
  the CPU has it) and, for CPUs without, in float32; per sample after the
  first (whose call also optimizes the graph). The bfloat16 rows build up
  to what the export does: "min/max" (the converter's ranges), "limits"
  (`tf_deraindrop.export.int8.limits`: saturated sigmoid/tanh inputs, ReLU'd sums, the
  output's [0, 1]), "equalized" (channel equalization first,
  `tf_deraindrop.export.int8.equalization`, measured in the same pass), then the export's
  choice of `tf_deraindrop.export.int8.calibrate.calibrated`, which keeps equalization only
  where int8 simulated on the calibration samples says it helps (the
  simulation counts in "export", not per sample), then the export's
  default: that, with each bias corrected for its int8 kernel
  (`tf_deraindrop.export.int8.calibrate.fixed_range_graph`; the correction counts in
  "export"); the float32 row is the choice too, biases not corrected. "export" is the whole
  conversion, SavedModel to `.tflite` bytes, either way. Wall time and the
  process's CPU time are both given: on a loaded machine, two threads that
  wait for each other at every op (TensorFlow) lose more wall time than one
  thread (the calibrator).

Both calibrate on the same samples (case1.jpg and the Raindrop pair's rainy
image, whole and cropped) and are scored on the held-out case2.jpg and on
the calibration samples: PSNR of the int8 output against the Keras float32
generator (outputs clipped to [0, 1]).

    python benchmarks/export/bench_calibration.py --data DIR --weights generator.keras [--samples 4]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from benchmarks import common  # noqa: E402


class TimedDataset:
    """A representative dataset that notes when the converter asks for each sample."""

    def __init__(self, samples):
        self.samples, self.asked, self.asked_cpu = samples, [], []

    def __call__(self):
        for sample in self.samples:
            self.asked.append(time.perf_counter())
            self.asked_cpu.append(time.process_time())
            yield {"image": sample[None]}
        self.asked.append(time.perf_counter())
        self.asked_cpu.append(time.process_time())

    @staticmethod
    def _per_sample(marks) -> float:
        """After the first sample, as `Ranges.seconds_per_sample`."""
        if len(marks) < 3:
            return marks[-1] - marks[0]
        return (marks[-1] - marks[1]) / (len(marks) - 2)

    @property
    def seconds_per_sample(self) -> float:
        return self._per_sample(self.asked)

    @property
    def cpu_seconds_per_sample(self) -> float:
        return self._per_sample(self.asked_cpu)


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--samples", type=int, default=4, help="calibration samples (4)")
    args = cli.parse_args()
    tf = common.tf_threads(args.threads)

    from tf_deraindrop.export.convert import convert, float_ops, write_saved_model
    from tf_deraindrop.export.int8 import calibrate, fake_quant
    from tf_deraindrop.export.int8 import ranges as int8_ranges
    from tf_deraindrop.export.samples import fit_samples
    from tf_deraindrop.inference.precision import native_bfloat16

    h, w = args.height, args.width
    samples = fit_samples(common.read_photos(args.data, common.RAINY), h, w, args.samples)
    held_out = fit_samples(common.read_photos(args.data, [common.HELD_OUT]), h, w, 1)
    generators = common.compared_generators(args.weights, not args.no_random)

    report = common.Report()
    report.say(
        f"int8 calibration at {h} x {w}, {args.threads} threads, {args.samples} samples from "
        f"{', '.join(common.RAINY)}; held out: {common.HELD_OUT}",
        f"native bfloat16: {native_bfloat16()}",
        "",
    )
    work = tempfile.mkdtemp(prefix="bench_calibration_")
    for label, generator in generators:
        rows = []
        start = time.perf_counter()
        write_saved_model(generator, os.path.join(work, "reference"), h, w)
        dataset = TimedDataset(samples)
        reference = convert(os.path.join(work, "reference"), "int8", dataset)
        total = time.perf_counter() - start
        per_sample, cpu = dataset.seconds_per_sample, dataset.cpu_seconds_per_sample
        rows.append(("converter", per_sample, cpu, total, reference))

        variants = [  # (row, precision, ranges as the export makes them, equalize)
            ("tensorflow bfloat16, min/max", "bfloat16", False, False),
            ("tensorflow bfloat16, limits", "bfloat16", True, False),
            ("tensorflow bfloat16, equalized", "bfloat16", True, True),
            ("tensorflow bfloat16", "bfloat16", True, None),
            ("tensorflow bfloat16, biases corrected", "bfloat16", "export", None),
            ("tensorflow float32", "float32", True, None),
        ]
        for name, precision, limits, equalize in variants:
            if precision == "bfloat16" and not native_bfloat16()[0]:
                continue
            start = time.perf_counter()
            if limits == "export":  # the export's own call (it freezes), biases corrected after
                graph, ranges = calibrate.fixed_range_graph(generator, h, w, samples, precision)
                name += f" ({'' if graph.scales else 'not '}equalized)"
            elif limits:
                frozen, values, ranges, scales = calibrate.calibrated(
                    calibrate.freeze(generator, h, w), samples, precision, equalize
                )
                graph = fake_quant.FakeQuantGraph(frozen, values)
                name += "" if equalize is not None else f" ({'' if scales else 'not '}equalized)"
            else:
                frozen = calibrate.freeze(generator, h, w)
                ranges = int8_ranges.record_ranges(frozen, samples, precision)
                graph = fake_quant.FakeQuantGraph(frozen, ranges.values)
            saved = os.path.join(work, "fixed")
            write_saved_model(graph, saved, h, w)
            model = convert(saved, "int8")
            total = time.perf_counter() - start
            assert not float_ops(model)
            per_sample, cpu = ranges.seconds_per_sample, ranges.cpu_seconds_per_sample
            rows.append((name, per_sample, cpu, total, model))

        report.section(f"{label}:")
        base, base_cpu = rows[0][1], rows[0][2]
        for name, per_sample, cpu, total, model in rows:  # scored after: the timings run alone
            scores = common.tflite_psnr(model, work, generator, [*held_out, *samples], threads=2)
            held, seen = scores[: len(held_out)], scores[len(held_out) :]
            report.say(
                f"  {name:<50} {per_sample:6.2f} s per sample ({base / per_sample:5.1f}x), "
                f"CPU {cpu:6.2f} s ({base_cpu / cpu:5.1f}x), export {total:6.1f} s; "
                f"int8 vs float PSNR held-out {held[0]:.2f} dB, "
                f"calibration samples {min(seen):.2f}-{max(seen):.2f} dB"
            )
    report.write(args.out, "calibration_cpu.txt", f"tensorflow {tf.__version__}")


if __name__ == "__main__":
    main()
