"""Which half of the generator loses accuracy in int8: attentive-recurrent net or autoencoder.

The export graph (`export/graph.py`) is cut in two: the attentive-recurrent
network (image -> final attention map `A_N`) and the autoencoder
(image, `A_N` -> derained image). Each half is converted to int8 on its
own, calibrated on crops of case1.jpg, and the halves are combined in the
four ways (float or int8 each) on held-out crops of case2.jpg. PSNR is of
outputs clipped to [0, 1] against the all-float output; the attention map's
is against its own value range.

    python benchmarks/export/bench_int8_parts.py --data DIR                 # random He-init weights
    python benchmarks/export/bench_int8_parts.py --data DIR --weights g.keras  # a trained one
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

from benchmarks.common import add_data_flag, random_checkpoint  # noqa: E402


def int8_model(function, samples):
    """`function` (a `tf.function` with an input signature) as an int8 TFLite runner."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = Interpreter(model_content=converter.convert(), num_threads=2)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    output = interpreter.get_output_details()[0]["index"]

    def run(*arrays):
        for detail in inputs:  # the image has 3 channels, the map 1
            (array,) = [a for a in arrays if a.shape[-1] == detail["shape"][-1]]
            interpreter.set_tensor(detail["index"], array)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_flag(parser)
    parser.add_argument("--weights", help=".keras or gen.pkl (default: a random checkpoint)")
    parser.add_argument("--seed", type=int, default=0, help="random checkpoint seed (0)")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=360)
    parser.add_argument("--calibration-samples", type=int, default=8)
    args = parser.parse_args()

    import tensorflow as tf

    from tf_deraindrop.export.graph import DeployGraph
    from tf_deraindrop.export.samples import fit_samples
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.metrics import psnr
    from tf_deraindrop.utils.images import read_image

    if args.weights:
        graph, label = DeployGraph(load_generator(args.weights)), os.path.basename(args.weights)
    else:
        with tempfile.TemporaryDirectory() as folder:
            graph = DeployGraph(load_generator(random_checkpoint(folder, seed=args.seed)))
        label = f"random He-init checkpoint, seed {args.seed}"
    h, w = args.height, args.width
    case1, case2 = (
        read_image(os.path.join(args.data, "real_raindrops", f"case{i}.jpg")) for i in (1, 2)
    )
    calibration = [s[None] for s in fit_samples([case1], h, w, args.calibration_samples)]
    tests = [s[None] for s in fit_samples([case2], h, w, 2, seed=1)]

    image_spec, map_spec = tf.TensorSpec((1, h, w, 3)), tf.TensorSpec((1, h, w, 1))
    attention = tf.function(lambda x: graph.attention_maps(x)[-1], input_signature=[image_spec])
    autoencoder = tf.function(graph.autoencoder, input_signature=[image_spec, map_spec])
    attention_int8 = int8_model(attention, [[x] for x in calibration])
    autoencoder_int8 = int8_model(autoencoder, [[x, attention(x).numpy()] for x in calibration])

    rows = {
        "A_N (int8 attentive-recurrent alone)": [],
        "int8 attentive-recurrent, float autoencoder": [],
        "float attentive-recurrent, int8 autoencoder": [],
        "both int8": [],
    }
    for x in tests:
        a = attention(x).numpy()
        a8 = attention_int8(x)
        reference = np.clip(autoencoder(x, a).numpy(), 0, 1)
        spread = float(a.max() - a.min())
        rows["A_N (int8 attentive-recurrent alone)"].append(
            20 * np.log10(spread / np.sqrt(np.mean((a8 - a) ** 2)))
        )
        outputs = {
            "int8 attentive-recurrent, float autoencoder": autoencoder(x, a8).numpy(),
            "float attentive-recurrent, int8 autoencoder": autoencoder_int8(x, a),
            "both int8": autoencoder_int8(x, a8),
        }
        for name, output in outputs.items():
            rows[name].append(psnr(np.clip(output, 0, 1), reference))

    print(f"{label}; {h} x {w}, calibrated on case1, measured on 2 crops of case2\n")
    print("| int8 part | PSNR vs float (dB) |")
    print("|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {' / '.join(f'{v:.1f}' for v in values)} |")


if __name__ == "__main__":
    main()
