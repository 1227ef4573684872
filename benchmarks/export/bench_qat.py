"""int8 accuracy before and after quantization-aware fine-tuning (export.int8.qat), 480 x 720.

For each generator (a trained one with `--weights`, and He-initialised
random weights unless `--no-random`): the int8 export calibrated in
TensorFlow (`tf_deraindrop.export.int8.calibrate`, step 0), then the same after `--steps`
steps of fine-tuning on crops of the rainy training photos against the
float model's own outputs, once with the calibrated ranges fixed and once
with the ranges trained too (`--range-learning-rate`, by default the rate
`tf_deraindrop.export.tflite --qat-range-lr` suggests; 0 skips that run). Each is scored
on the held-out real photo (and on the training photos) as PSNR of the
int8 output against the Keras float32 generator, outputs clipped to
[0, 1]. Training and calibration photos: case1.jpg and the Raindrop
pair's rainy image; held out: case2.jpg.

    python benchmarks/export/bench_qat.py --data DIR --weights generator.keras [--steps 100]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from benchmarks import common  # noqa: E402


def main() -> None:
    cli = common.parser(__doc__)
    cli.add_argument("--steps", type=int, default=100)
    cli.add_argument("--crop", type=int, default=256)
    cli.add_argument("--samples", type=int, default=4, help="calibration samples (4)")
    cli.add_argument(
        "--range-learning-rate",
        type=float,
        default=None,
        help="of the trained ranges (the suggested 3e-3; 0: fixed ranges only)",
    )
    args = cli.parse_args()
    tf = common.tf_threads(args.threads)

    from tf_deraindrop.export.convert import convert, write_saved_model
    from tf_deraindrop.export.int8 import qat
    from tf_deraindrop.export.samples import fit_samples

    h, w = args.height, args.width
    training = common.read_photos(args.data, common.RAINY)
    calibration = fit_samples(training, h, w, args.samples)
    held_out = fit_samples(common.read_photos(args.data, [common.HELD_OUT]), h, w, 1)[0]
    seen = fit_samples(training, h, w, len(training))
    generators = common.compared_generators(args.weights, not args.no_random)

    report = common.Report()
    report.say(
        f"int8 before/after quantization-aware fine-tuning at {h} x {w}, {args.threads} threads; "
        f"calibration: {args.samples} samples and training crops from {', '.join(common.RAINY)}; "
        f"held out: {common.HELD_OUT}",
        "",
    )
    work = tempfile.mkdtemp(prefix="bench_qat_")

    def score(graph, generator) -> tuple[float, list[float]]:
        saved = os.path.join(work, "saved")
        write_saved_model(graph, saved, h, w)
        model = convert(saved, "int8")
        scores = common.tflite_psnr(model, work, generator, [held_out, *seen], args.threads)
        return scores[0], scores[1:]

    trained_rate = args.range_learning_rate
    if trained_rate is None:
        trained_rate = qat.SUGGESTED_RANGE_LEARNING_RATE
    runs = [(0, 0.0), (args.steps, 0.0)] + ([(args.steps, trained_rate)] if trained_rate else [])
    for label, generator in generators:
        report.section(f"{label}:")
        for steps, range_rate in runs:
            start = time.perf_counter()
            graph, tuned = qat.fine_tune(
                generator,
                h,
                w,
                calibration,
                training,
                steps,
                crop=args.crop,
                range_learning_rate=range_rate,
            )
            seconds = time.perf_counter() - start
            held, training_scores = score(graph, generator)
            what = "calibrated in TensorFlow" if not steps else str(tuned)
            ranges = "" if not steps else ", ranges trained" if range_rate else ", ranges fixed"
            report.say(
                f"  {steps:4d} steps{ranges}: int8 vs float PSNR held-out {held:.2f} dB, "
                f"training photos {', '.join(f'{s:.2f}' for s in training_scores)} dB "
                f"({seconds:.0f} s; {what})"
            )
    report.write(args.out, "qat_cpu.txt", f"tensorflow {tf.__version__}")


if __name__ == "__main__":
    main()
