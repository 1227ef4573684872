"""Where int8 loses accuracy on the random-weight generator: its activations, part by part.

Simulated in TensorFlow (`tf_deraindrop.export.int8.simulate`'s fake quantization), at
240 x 360 by default, on the graph the export converts after calibration
with equalization forced on and biases corrected (as QAT starts from it):
PSNR of the output against the float generator on the held-out photo,
with every activation at 8 bits, with all of them at 16 bits (the weights'
cost alone), with a scale per channel for every activation (which
TFLite does not have), and with one part at a time at 16 bits or per
channel, before any fine-tuning. A diagnosis, not a goal. The
random-weight generator unless `--weights`.

    python benchmarks/diagnostics/bench_int8_activations.py --data DIR [--weights generator.keras]
"""

from __future__ import annotations

import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from benchmarks import common  # noqa: E402


def part(point: str) -> str:
    """The part of the generator a quantized tensor belongs to."""
    node = point.split(":")[0]
    found = re.match(r"attentive_recurrent/([a-z_]+?)(_\d+)?/(\w+)", node)
    if node == "image":
        return "input image"
    if not found:
        return "shared image convolution" if node.startswith("attentive") else "autoencoder"
    if found.group(1) != "det_blocks":
        return {"gates": "LSTM gates", "lstm": "LSTM states", "mask": "attention map"}.get(
            found.group(1), found.group(1)
        )
    op = found.group(3)
    index = int(re.sub(r"\D", "", op) or 0)
    chain = op.startswith("add") or (op.startswith("Relu") and index % 3 == 0)
    return "residual chain" if chain else "residual branches"


def main() -> None:
    cli = common.parser(__doc__, "a trained generator instead (.keras)", no_random=False)
    cli.set_defaults(height=240, width=360)
    args = cli.parse_args()
    tf = common.tf_threads(args.threads)
    import numpy as np

    from tf_deraindrop.export.int8 import calibrate, fake_quant
    from tf_deraindrop.export.int8 import ranges as int8_ranges
    from tf_deraindrop.export.int8.bias_correction import bias_corrected
    from tf_deraindrop.export.int8.qat_graph import (
        fake_quant_kernel,
        fixed_output_fake_quant,
        weight_groups,
    )
    from tf_deraindrop.export.samples import fit_samples
    from tf_deraindrop.metrics import psnr

    h, w = args.height, args.width
    samples = fit_samples(common.read_photos(args.data, common.RAINY), h, w, 4)
    held_out = fit_samples(common.read_photos(args.data, [common.HELD_OUT]), h, w, 1)[0]
    ((label, generator),) = common.compared_generators(args.weights, not args.weights)
    expected = np.clip(np.asarray(generator(held_out[None])["outputs"][-1])[0], 0, 1)
    frozen, values, _, _ = calibrate.calibrated(
        calibrate.freeze(generator, h, w), samples, "float32", True
    )
    frozen = bias_corrected(frozen, samples)
    points = sorted(values)
    extremes = int8_ranges.record_ranges(frozen, samples, "float32", channels=points).channels
    kernels = {}
    for kind, value, names in weight_groups(frozen):
        if kind == "kernel":
            rounded = fake_quant_kernel(tf.constant(value)).numpy()
            kernels.update({name + ":0": rounded for name in names})

    def simulate(wide=(), per_channel=()) -> float:
        """PSNR with the parts in `wide` at 16 bits and those in `per_channel` per channel."""
        ranges, bits = {}, {}
        for point in points:
            low, high = values[point]
            if part(point) in per_channel and point != frozen.input:
                channel_low, channel_high = extremes[point]
                low = np.maximum(np.minimum(channel_low, 0), low)
                high = np.minimum(np.maximum(channel_high, 1e-6), high)
            ranges[point] = (low, high)
            bits[point] = 16 if part(point) in wide else 8
        graph_def, outputs = fake_quant.insert_fake_quant(frozen, ranges, bits)
        graph_def = fixed_output_fake_quant(graph_def)
        output = outputs[0]

        @tf.function
        def run(image):
            input_map = {frozen.input: image}
            input_map.update({name: tf.constant(value) for name, value in kernels.items()})
            (derained,) = tf.graph_util.import_graph_def(
                graph_def, input_map=input_map, return_elements=[output], name="diag"
            )
            return derained

        found = run(tf.constant(held_out[None])).numpy()[0]
        return psnr(np.clip(found, 0, 1), expected)

    parts = sorted({part(point) for point in points})
    report = common.Report()
    report.say(
        f"int8 simulated at {h} x {w}, {label}, equalized, biases corrected, before fine-tuning; "
        f"held out: {common.HELD_OUT}; {len(points)} quantized tensors",
        "",
    )
    base = simulate()
    report.say(f"  every activation at 8 bits: {base:.2f} dB")
    report.say(f"  every activation at 16 bits (the int8 weights' cost): {simulate(parts):.2f} dB")
    every = simulate(per_channel=parts)
    report.say(f"  a scale per channel for every activation: {every:.2f} dB", "")
    report.say("  one part at a time: gain at 16 bits | gain with a scale per channel")
    for name in parts:
        count = sum(part(point) == name for point in points)
        wide, channels = simulate((name,)) - base, simulate(per_channel=(name,)) - base
        report.say(f"  {name} ({count} tensors): {wide:+.2f} dB | {channels:+.2f} dB")
    report.write(args.out, "int8_activations_cpu.txt", f"tensorflow {tf.__version__}")


if __name__ == "__main__":
    main()
