"""int8 calibration: the TFLite converter's calibrator against ranges measured in TensorFlow.

One run, side by side, at 480 x 720 on 2 threads, for each generator (a
trained one with `--weights`, and He-initialised random weights unless
`--no-random`):

* converter: `convert(..., representative_dataset)`, today's path. Its
  time per sample is read from the representative dataset itself: the time
  between the converter asking for the second sample and asking past the
  last, over the samples after the first.
* tensorflow: `export.calibrate` (ranges in TensorFlow, fake-quant nodes,
  converted without a dataset), with the ranges measured in bfloat16 (where
  the CPU has it) and, for CPUs without, in float32; per sample after the
  first (whose call also optimizes the graph). "export" is the whole
  conversion, SavedModel to `.tflite` bytes, either way. Wall time and the
  process's CPU time are both given: on a loaded machine, two threads that
  wait for each other at every op (TensorFlow) lose more wall time than one
  thread (the calibrator).

Both calibrate on the same samples (case1.jpg and the Raindrop pair's rainy
image, whole and cropped) and are scored on the held-out case2.jpg and on
the calibration samples: PSNR of the int8 output against the Keras float32
generator (outputs clipped to [0, 1]).

    python benchmarks/bench_calibration.py --weights generator.keras [--samples 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data")
CALIBRATION = ("real_raindrops/case1.jpg", "raindrop_pairs/data/0_rain.png")
HELD_OUT = "real_raindrops/case2.jpg"


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


def score(path, generator, images) -> list[float]:
    from tf_deraindrop.lite import LiteDerainer
    from tf_deraindrop.metrics import psnr

    derainer = LiteDerainer(path, threads=2)
    found = []
    for image in images:
        expected = np.asarray(generator(image[None], training=False)["outputs"][-1])[0]
        found.append(psnr(np.clip(derainer.run_tile(image), 0, 1), np.clip(expected, 0, 1)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a trained generator (.keras)")
    parser.add_argument("--no-random", action="store_true", help="skip the random generator")
    parser.add_argument("--samples", type=int, default=4, help="calibration samples (4)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from export import calibrate
    from export.convert import convert, float_ops, write_saved_model
    from export.samples import fit_samples
    from tf_deraindrop.images import read_image
    from tf_deraindrop.inference import load_generator
    from tf_deraindrop.precision import native_bfloat16

    h, w = args.height, args.width
    rainy = [read_image(os.path.join(DATA, name)) for name in CALIBRATION]
    samples = fit_samples(rainy, h, w, args.samples)
    held_out = fit_samples([read_image(os.path.join(DATA, HELD_OUT))], h, w, 1)

    generators = []
    if args.weights:
        generators.append((f"trained ({args.weights})", load_generator(args.weights)))
    if not args.no_random:
        from tests.torch_reference import save_random_checkpoint
        from tf_deraindrop.checkpoint import import_official_checkpoint

        path = "/tmp/bench_calibration_gen.pkl"
        save_random_checkpoint(path, seed=0)
        generators.append(("random (He init, seed 0)", import_official_checkpoint(path)))

    lines = [
        f"int8 calibration at {h} x {w}, {args.threads} threads, {args.samples} samples from "
        f"{', '.join(CALIBRATION)}; held out: {HELD_OUT}",
        f"native bfloat16: {native_bfloat16()}",
        "",
    ]
    print("\n".join(lines), flush=True)
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

        for precision in ("bfloat16", "float32"):
            if precision == "bfloat16" and not native_bfloat16()[0]:
                continue
            start = time.perf_counter()
            frozen = calibrate.freeze(generator, h, w)
            ranges = calibrate.record_ranges(frozen, samples, precision)
            graph = calibrate.FakeQuantGraph(frozen, ranges.values)
            saved = os.path.join(work, f"fixed_{precision}")
            write_saved_model(graph, saved, h, w)
            model = convert(saved, "int8")
            total = time.perf_counter() - start
            assert not float_ops(model)
            rows.append(
                (
                    f"tensorflow {precision}",
                    ranges.seconds_per_sample,
                    ranges.cpu_seconds_per_sample,
                    total,
                    model,
                )
            )

        lines.append(f"{label}:")
        print(lines[-1], flush=True)
        base, base_cpu = rows[0][1], rows[0][2]
        for name, per_sample, cpu, total, model in rows:  # scored after: the timings run alone
            path = os.path.join(work, "model.tflite")
            with open(path, "wb") as f:
                f.write(model)
            held = score(path, generator, held_out)
            seen = score(path, generator, samples)
            line = (
                f"  {name:<20} {per_sample:6.2f} s per sample ({base / per_sample:5.1f}x), "
                f"CPU {cpu:6.2f} s ({base_cpu / cpu:5.1f}x), export {total:6.1f} s; "
                f"int8 vs float PSNR held-out {held[0]:.2f} dB, "
                f"calibration samples {min(seen):.2f}-{max(seen):.2f} dB"
            )
            print(line, flush=True)
            lines.append(line)
        lines.append("")
    lines.append(f"tensorflow {tf.__version__}")
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "calibration_cpu.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
