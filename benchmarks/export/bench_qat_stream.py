"""Both signatures of a LiteGenerator's int8 export, calibrated and after fine-tuning.

For a trained `LiteGenerator` (`--weights`, e.g. a distilled student): the
int8 export calibrated in TensorFlow, then the same after `--steps` steps
of quantization-aware fine-tuning (`tf_deraindrop.export.int8.qat`), whose weights the
`stream` signature takes too. Each `.tflite` is scored on the held-out
real photo against the Keras float32 model, both outputs clipped to
[0, 1]: `derain` once, and `stream` over 3 frames of the photo with the
ConvLSTM state carried (against `LiteGenerator.stream`). Calibration and
fine-tuning photos: case1.jpg and the Raindrop pair's rainy image.

    python benchmarks/export/bench_qat_stream.py --data DIR --weights student.keras [--steps 50]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from benchmarks import common  # noqa: E402

FRAMES = 3


def main() -> None:
    cli = common.parser(__doc__, weights_help="a trained LiteGenerator (.keras)", no_random=False)
    cli.add_argument("--steps", type=int, default=50)
    cli.add_argument("--samples", type=int, default=4, help="calibration samples (4)")
    args = cli.parse_args()
    if not args.weights:
        cli.error("--weights: a trained LiteGenerator is needed")
    tf = common.tf_threads(args.threads)
    import numpy as np

    from tf_deraindrop.export.convert import convert, write_saved_model
    from tf_deraindrop.export.int8.options import Int8Options
    from tf_deraindrop.export.int8.pipeline import int8_calibration
    from tf_deraindrop.export.samples import fit_samples
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.metrics import psnr

    h, w = args.height, args.width
    generator = load_generator(args.weights)
    if not hasattr(generator, "stream"):
        cli.error(f"--weights {args.weights}: not a LiteGenerator (no stream signature)")
    training = common.read_photos(args.data, common.RAINY)
    calibration = fit_samples(training, h, w, args.samples)
    held_out = fit_samples(common.read_photos(args.data, [common.HELD_OUT]), h, w, 1)[0]
    expected = np.clip(np.asarray(generator(held_out[None])["outputs"][-1])[0], 0, 1)
    state, streamed = None, []
    for _ in range(FRAMES):
        derained, _, state = generator.stream(held_out[None], state)
        streamed.append(np.clip(np.asarray(derained)[0], 0, 1))

    report = common.Report()
    report.say(
        f"int8 LiteGenerator export at {h} x {w}, {args.threads} threads, {args.weights}; "
        f"calibration: {args.samples} samples and fine-tuning crops from "
        f"{', '.join(common.RAINY)}; scored on {common.HELD_OUT} against Keras float32",
        "",
    )
    work = tempfile.mkdtemp(prefix="bench_qat_stream_")
    for steps in (0, args.steps):
        start = time.perf_counter()
        source, dataset, summary = int8_calibration(
            generator,
            calibration,
            Int8Options(qat_steps=steps, qat_dir=args.data if steps else None),
            qat_images=training,
        )
        saved = os.path.join(work, f"saved_{steps}")
        write_saved_model(source, saved, h, w)
        path = os.path.join(work, f"int8_{steps}.tflite")
        with open(path, "wb") as f:
            f.write(convert(saved, "int8", dataset))
        seconds = time.perf_counter() - start
        derainer = LiteDerainer(path, threads=args.threads)
        per_frame = psnr(np.clip(derainer.run_tile(held_out), 0, 1), expected)
        stream = [
            psnr(derainer.stream(held_out).astype(np.float32) / 255, frame) for frame in streamed
        ]
        report.say(
            f"  {steps:4d} QAT steps: derain {per_frame:.2f} dB; stream over {FRAMES} frames "
            f"{', '.join(f'{p:.2f}' for p in stream)} dB (uint8 output); export {seconds:.0f} s"
            f"{summary}"
        )
    report.write(args.out, "qat_stream_cpu.txt", f"tensorflow {tf.__version__}")


if __name__ == "__main__":
    main()
