"""A/B of the feature term: the same distillation run with several `--feature-weight`s.

Each run has the same seed, data, crops, steps and student initialisation
(checked: the adapters are made after the student), and differs only in the
weight of the feature term. Reported per weight: the validation PSNR against
the teacher after each epoch (whole held-out frames), the student's and the
teacher's Y-PSNR against the ground truth, and the seconds per step.

    python benchmarks/diagnostics/bench_distill_features.py --teacher generator.keras \\
        --data-dir pairs/ --steps 300 --crop-size 64 \\
        --output benchmarks/results/distill_features_ab.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

from benchmarks.common import Report  # noqa: E402


def same_student_init(config, weights: list[float]) -> bool:
    """Whether the runs' students start from the same weights (as `distill` builds them)."""
    import dataclasses

    import keras

    from tf_deraindrop.training.distill import build_distiller, load_teacher, teacher_in
    from tf_deraindrop.training.distribute import resolve_precision

    teacher = load_teacher(config.teacher)
    starts = []
    for weight in weights:
        keras.utils.set_random_seed(config.seed)
        twin = teacher_in(teacher, resolve_precision(config.teacher_precision))
        model = build_distiller(dataclasses.replace(config, feature_weight=weight), True, twin)
        starts.append(model.generator.get_weights())
    return all(all(np.array_equal(a, b) for a, b in zip(starts[0], other)) for other in starts[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, metavar="PATH", help="the teacher (.keras)")
    parser.add_argument("--data-dir", required=True, help="Raindrop-layout pairs or rainy frames")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 10.0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    from tf_deraindrop.training.distill import DistillConfig, distill

    report = Report()
    work = tempfile.mkdtemp(prefix="ab_features_")
    names = ("teacher", "data_dir", "preset", "steps", "steps_per_epoch", "crop_size")
    settings = {name: getattr(args, name) for name in (*names, "batch_size", "seed")}
    base = DistillConfig(**settings, image_every=10**6, checkpoint_every=10**6)
    same = same_student_init(base.update({"out_dir": work}), args.weights)
    rows = []
    load = [os.getloadavg()[0]]
    for weight in args.weights:
        out_dir = os.path.join(work, f"w{weight:g}")
        result = distill(base.update({"out_dir": out_dir, "feature_weight": weight}), verbose=0)
        load.append(os.getloadavg()[0])
        rows.append((weight, result.history, result.seconds_per_step))
    report.say(
        f"Student {args.preset} from {os.path.basename(args.teacher)}, data "
        f"{os.path.basename(os.path.normpath(args.data_dir))}: {args.steps} steps, "
        f"batch {args.batch_size} x {args.crop_size}^2 crops, seed {args.seed}, teacher on the fly "
        f"(--teacher-precision auto), validation every {args.steps_per_epoch} steps on the "
        f"held-out 10% of frames, whole frames. Same student initialisation in every run: {same}. "
        f"Load average {min(load):.1f} to {max(load):.1f} on {os.cpu_count()} CPUs."
    )
    report.say()
    steps = ", ".join(
        str(args.steps_per_epoch * (k + 1)) for k in range(len(rows[0][1]["val_psnr"]))
    )
    report.say(
        f"| --feature-weight | val PSNR vs teacher, dB (steps {steps}) | student Y-PSNR vs GT | "
        "teacher Y-PSNR vs GT | s/step (training and validation) |"
    )
    report.say("|---|---|---|---|---|")
    for weight, history, per_step in rows:
        psnrs = ", ".join(f"{v:.2f}" for v in history["val_psnr"])
        gt = history.get("val_psnr_y_gt", [float("nan")])[-1]
        teacher_gt = history.get("val_teacher_psnr_y_gt", [float("nan")])[-1]
        report.say(f"| {weight:g} | {psnrs} | {gt:.2f} | {teacher_gt:.2f} | {per_step:.3f} |")
    report.say()
    for weight, history, _ in rows:
        if "feature" in history:
            means = ", ".join(f"{v:.5f}" for v in history["feature"])
            report.say(f"Feature loss (epoch means), weight {weight:g}: {means}")
    report.say(
        f"keras {keras.__version__}, tensorflow {tf.__version__}; "
        f"run folders in <tmp>/{os.path.basename(work)}"
    )
    report.save(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
