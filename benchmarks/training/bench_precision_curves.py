"""Does `mixed_bfloat16` train as well as float32? Two runs of the same seed and length, compared.

Trains (unless already there) one float32 and one `mixed_bfloat16` run with the
same data, seed and settings, then reads both runs' TensorBoard logs and
prints the training losses (means over windows of steps), the validation PSNR
at every validation, the final numbers and the step rate from the event
times. Writes the table to `--results` and a picture of the curves beside it.

Usage:
    python benchmarks/training/bench_precision_curves.py --data-dir pairs/ --out-dir runs/curves
    python benchmarks/training/bench_precision_curves.py --out-dir runs/curves  # compare only

The step rates come from separate runs: on a shared machine they are only
indicative; `bench_train.py` times both precisions side by side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from benchmarks.common import RESULTS, read_scalars  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")
COLOURS = {"float32": (40, 90, 200), "mixed_bfloat16": (220, 90, 30)}


def train_runs(args) -> None:
    for precision in PRECISIONS:
        out = os.path.join(args.out_dir, precision)
        if os.path.isfile(os.path.join(out, "generator.keras")):
            continue
        command = [
            sys.executable, "-m", "tf_deraindrop.train", "--data-dir", args.data_dir,
            "--out-dir", out, "--precision", precision, "--crop-size", str(args.crop_size),
            "--steps", str(args.steps), "--steps-per-epoch", str(args.steps_per_epoch),
            "--val-fraction", "0.05", "--vgg-weights", "none", "--seed", str(args.seed),
            "--log-every", "10", "--checkpoint-every", str(args.steps_per_epoch),
        ]  # fmt: skip
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)


def scalars(events: dict, tag: str) -> tuple[np.ndarray, np.ndarray]:
    values = events.get(tag, [])
    steps = np.array([s for s, _ in values], np.int64)
    return steps, np.array([float(v) for _, v in values], np.float64)


def step_rate(log_dir: str) -> float:
    """Training steps per second from the wall times of the loss events."""
    import tensorflow as tf

    times = []
    for name in sorted(os.listdir(log_dir)):
        if name.startswith("events.out.tfevents"):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
                if any(v.tag == "loss/g_total" for v in event.summary.value):
                    times.append((event.step, event.wall_time))
    (s0, t0), (s1, t1) = times[0], times[-1]
    return (s1 - s0) / (t1 - t0)


def windows(steps: np.ndarray, values: np.ndarray, size: int) -> list[tuple[int, float]]:
    """Mean of each window of `size` steps (`(last step, mean)`)."""
    out = []
    for end in range(size, int(steps.max()) + 1, size):
        chosen = values[(steps > end - size) & (steps <= end)]
        if chosen.size:
            out.append((end, float(chosen.mean())))
    return out


def plot(series: dict, path: str, size=(900, 340)) -> None:
    """Two panels: windowed multiscale loss and validation PSNR, one line per precision."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    panels = [("multiscale loss (window means)", "multiscale"), ("validation PSNR (dB)", "psnr")]
    width = size[0] // 2
    for index, (title, key) in enumerate(panels):
        x0, y0, x1, y1 = index * width + 50, 30, (index + 1) * width - 20, size[1] - 40
        draw.rectangle((x0, y0, x1, y1), outline=(160, 160, 160))
        draw.text((x0, 10), title, fill="black")
        lines = {p: series[p][key] for p in series if series[p][key]}
        all_x = [x for pts in lines.values() for x, _ in pts]
        all_y = [y for pts in lines.values() for _, y in pts]
        lo, hi = min(all_y), max(all_y)
        span_y = (hi - lo) or 1.0
        draw.text((x0 - 45, y0), f"{hi:.3g}", fill="black")
        draw.text((x0 - 45, y1 - 10), f"{lo:.3g}", fill="black")
        draw.text((x1 - 40, y1 + 5), f"{max(all_x)}", fill="black")
        for precision, pts in lines.items():
            xy = [
                (x0 + (x1 - x0) * x / max(all_x), y1 - (y1 - y0) * (y - lo) / span_y)
                for x, y in pts
            ]
            draw.line(xy, fill=COLOURS[precision], width=2)
    for i, precision in enumerate(series):
        draw.text((60 + 200 * i, size[1] - 18), precision, fill=COLOURS[precision])
    image.save(path)


def compare(args) -> str:
    series, lines = {}, []
    for precision in PRECISIONS:
        log_dir = os.path.join(args.out_dir, precision, "logs")
        events = read_scalars(log_dir)
        ms_steps, ms = scalars(events, "loss/multiscale")
        val_steps, psnr = scalars(events, "validation/psnr")
        series[precision] = {
            "multiscale": windows(ms_steps, ms, args.window),
            "psnr": list(zip(val_steps.tolist(), psnr.tolist())),
            "rate": step_rate(log_dir),
        }
    header = f"{'':>8} | " + " | ".join(f"{p:>15}" for p in PRECISIONS)
    import json

    for precision in PRECISIONS:
        record = json.load(open(os.path.join(args.out_dir, precision, "config.json")))
        c, r = record["config"], record["resolved"]
        data = os.path.basename(os.path.normpath(r["data_dir"]))  # the folder's name, not its path
        lines.append(
            f"{precision}: data {data} ({r['training_pairs']} training, "
            f"{r['validation_pairs']} validation pairs), crop {c['crop_size']}, batch "
            f"{c['batch_size']}, {r['total_steps']} steps, seed {c['seed']}, lr {c['g_lr']}, "
            f"perceptual {r['perceptual_loss']}, {r['precision']}"
        )
    lines.append(f"multiscale loss, mean over each {args.window} steps")
    lines.append(header)
    for row in zip(*(series[p]["multiscale"] for p in PRECISIONS)):
        lines.append(f"{row[0][0]:>8} | " + " | ".join(f"{v:>15.5f}" for _, v in row))
    lines.append("validation PSNR (Y, dB)")
    lines.append(header)
    for row in zip(*(series[p]["psnr"] for p in PRECISIONS)):
        lines.append(f"{row[0][0]:>8} | " + " | ".join(f"{v:>15.3f}" for _, v in row))
    final = {p: series[p]["psnr"][-1][1] for p in PRECISIONS}
    best = {p: max(v for _, v in series[p]["psnr"]) for p in PRECISIONS}
    last_ms = {p: series[p]["multiscale"][-1][1] for p in PRECISIONS}
    lines.append(
        "final validation PSNR: "
        + ", ".join(f"{p} {final[p]:.3f}" for p in PRECISIONS)
        + f" (bfloat16 - float32: {final['mixed_bfloat16'] - final['float32']:+.3f} dB); best: "
        + ", ".join(f"{p} {best[p]:.3f}" for p in PRECISIONS)
    )
    lines.append(
        "final multiscale window: "
        + ", ".join(f"{p} {last_ms[p]:.5f}" for p in PRECISIONS)
        + "; steps/s from event times (separate runs): "
        + ", ".join(f"{p} {series[p]['rate']:.3f}" for p in PRECISIONS)
    )
    plot(series, os.path.splitext(args.results)[0] + ".png")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="training pairs (train the two runs if missing)")
    parser.add_argument("--out-dir", default=os.path.join("runs", "precision_curves"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--window", type=int, default=250)
    parser.add_argument("--results", default=os.path.join(RESULTS, "precision_curves_cpu.txt"))
    args = parser.parse_args(argv)
    if args.data_dir:
        train_runs(args)
    text = compare(args)
    print(text)
    with open(args.results, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
