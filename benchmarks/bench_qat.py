"""int8 accuracy before and after quantization-aware fine-tuning (export.qat), 480 x 720.

For each generator (a trained one with `--weights`, and He-initialised
random weights unless `--no-random`): the int8 export calibrated in
TensorFlow (`export.calibrate`, step 0) and the same after `--steps` steps
of fine-tuning on crops of the rainy training photos against the float
model's own outputs. Both are scored on the held-out real photo (and on the
training photos) as PSNR of the int8 output against the Keras float32
generator, outputs clipped to [0, 1]. Training and calibration photos:
case1.jpg and the Raindrop pair's rainy image; held out: case2.jpg.

    python benchmarks/bench_qat.py --weights generator.keras [--steps 100]
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
TRAINING = ("real_raindrops/case1.jpg", "raindrop_pairs/data/0_rain.png")
HELD_OUT = "real_raindrops/case2.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a trained generator (.keras)")
    parser.add_argument("--no-random", action="store_true", help="skip the random generator")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--samples", type=int, default=4, help="calibration samples (4)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from export import qat
    from export.convert import convert, write_saved_model
    from export.samples import fit_samples
    from tf_deraindrop.images import read_image
    from tf_deraindrop.inference import load_generator
    from tf_deraindrop.lite import LiteDerainer
    from tf_deraindrop.metrics import psnr

    h, w = args.height, args.width
    training = [read_image(os.path.join(DATA, name)) for name in TRAINING]
    calibration = fit_samples(training, h, w, args.samples)
    held_out = fit_samples([read_image(os.path.join(DATA, HELD_OUT))], h, w, 1)[0]
    seen = fit_samples(training, h, w, len(training))

    generators = []
    if args.weights:
        generators.append((f"trained ({args.weights})", load_generator(args.weights)))
    if not args.no_random:
        from tests.torch_reference import save_random_checkpoint
        from tf_deraindrop.checkpoint import import_official_checkpoint

        path = "/tmp/bench_qat_gen.pkl"
        save_random_checkpoint(path, seed=0)
        generators.append(("random (He init, seed 0)", import_official_checkpoint(path)))

    lines = [
        f"int8 before/after quantization-aware fine-tuning at {h} x {w}, {args.threads} threads; "
        f"calibration: {args.samples} samples and training crops from {', '.join(TRAINING)}; "
        f"held out: {HELD_OUT}",
        "",
    ]
    print("\n".join(lines), flush=True)
    work = tempfile.mkdtemp(prefix="bench_qat_")

    def score(graph, generator) -> tuple[float, list[float]]:
        saved = os.path.join(work, "saved")
        write_saved_model(graph, saved, h, w)
        path = os.path.join(work, "model.tflite")
        with open(path, "wb") as f:
            f.write(convert(saved, "int8"))
        derainer = LiteDerainer(path, threads=args.threads)

        def one(image):
            expected = np.asarray(generator(image[None], training=False)["outputs"][-1])[0]
            return psnr(np.clip(derainer.run_tile(image), 0, 1), np.clip(expected, 0, 1))

        return one(held_out), [one(image) for image in seen]

    for label, generator in generators:
        lines.append(f"{label}:")
        print(lines[-1], flush=True)
        for steps in (0, args.steps):
            start = time.perf_counter()
            graph, report = qat.fine_tune(
                generator, h, w, calibration, training, steps, crop=args.crop
            )
            seconds = time.perf_counter() - start
            held, training_scores = score(graph, generator)
            what = "calibrated in TensorFlow" if not steps else str(report)
            line = (
                f"  {steps:4d} steps: int8 vs float PSNR held-out {held:.2f} dB, training photos "
                f"{', '.join(f'{s:.2f}' for s in training_scores)} dB ({seconds:.0f} s; {what})"
            )
            print(line, flush=True)
            lines.append(line)
        lines.append("")
    lines.append(f"tensorflow {tf.__version__}")
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "qat_cpu.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
