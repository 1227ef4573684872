"""Where float32 TFLite (XNNPACK) and TF (oneDNN) differ: the generator's layers one by one.

Each case is one layer shape of the generator at 480 x 720, run as a TF
function and as a float32 `.tflite` in `ai_edge_litert` with its XNNPACK
delegate, on the same threads, in this one process, alternating engines
between repeats. It prints milliseconds, GFLOP/s and the TFLite / TF ratio,
and how many of each layer one frame runs, so the per-frame gap can be read
off. The upsampling appears both as TRANSPOSE_CONV and as the sub-pixel
convolution that `export/graph.py` uses instead, and an LSTM step (steps 2
to 4) in three arrangements of its gate convolutions.

    python benchmarks/inference/bench_tflite_ops.py             # 480 x 720, 2 threads
    python benchmarks/inference/bench_tflite_ops.py --quick     # 120 x 180
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402


def cases(h: int, w: int, rng):
    """(name, per frame, input shape, function of x, GFLOP) for each layer shape."""
    import tensorflow as tf

    from tf_deraindrop.export.graph import DeployGraph, subpixel_kernel

    def weights(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    def conv(cin, cout, dilation=1):
        kernel, bias = weights(3, 3, cin, cout), weights(cout)
        return lambda x: tf.nn.relu(
            tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME", dilations=dilation), bias)
        )

    def transposed(cin, cout, size):
        kernel, bias = weights(4, 4, cout, cin), weights(cout)
        return lambda x: tf.nn.relu(
            tf.nn.bias_add(tf.nn.conv2d_transpose(x, kernel, (1, *size, cout), 2, "SAME"), bias)
        )

    def subpixel(cin, cout):
        kernel, bias = subpixel_kernel(weights(4, 4, cout, cin)), np.tile(weights(cout), 4)
        return lambda x: DeployGraph._upsample(x, (kernel, bias))

    def lstm_step(arrangement):
        """One ConvLSTM update from `x, h, c` (stacked on channels), gates arranged three ways."""
        kx, kh = [weights(3, 3, 32, 32) for _ in "ifgo"], [weights(3, 3, 32, 32) for _ in "ifgo"]
        bias = [weights(32) for _ in "ifgo"]
        joint = [np.concatenate([a, b], axis=2) for a, b in zip(kx, kh)]

        def conv_same(x, kernel):
            return tf.nn.conv2d(x, kernel, 1, "SAME")

        def step(stacked):
            x, h, c = stacked[..., :32], stacked[..., 32:64], stacked[..., 64:]
            if arrangement == "split":  # export/graph.py: conv(x) + conv(h) per gate
                z = [tf.nn.bias_add(conv_same(x, a), b) + conv_same(h, k) for a, k, b in
                     zip(kx, kh, bias)]  # fmt: skip
            elif arrangement == "concat":
                xh = tf.concat([x, h], axis=3)
                z = [tf.nn.bias_add(conv_same(xh, k), b) for k, b in zip(joint, bias)]
            else:  # one convolution for all gates
                all_gates = conv_same(tf.concat([x, h], axis=3), np.concatenate(joint, axis=3))
                z = tf.split(tf.nn.bias_add(all_gates, np.concatenate(bias)), 4, axis=3)
            i, f, g, o = z
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            return tf.sigmoid(o) * tf.tanh(c)

        return step

    full, half, quarter = h * w, h * w // 4, h * w // 16
    g = 1e-9 * 2
    return [
        ("conv 3x3 32->32, full size", 67, (h, w, 32), conv(32, 32), g * full * 9 * 32 * 32),
        ("LSTM step, conv(x) + conv(h) per gate", 3, (h, w, 96), lstm_step("split"),
         g * full * 9 * 64 * 128),
        ("LSTM step, conv(concat(x, h)) per gate", 3, (h, w, 96), lstm_step("concat"),
         g * full * 9 * 64 * 128),
        ("LSTM step, one conv for all gates + SPLIT", 3, (h, w, 96), lstm_step("joint"),
         g * full * 9 * 64 * 128),
        ("conv 3x3 64->32, full size", 1, (h, w, 64), conv(64, 32), g * full * 9 * 64 * 32),
        ("conv 3x3 128->128, 1/2 size", 2, (h // 2, w // 2, 128), conv(128, 128),
         g * half * 9 * 128 * 128),
        ("conv 3x3 256->256, 1/4 size", 4, (h // 4, w // 4, 256), conv(256, 256),
         g * quarter * 9 * 256 * 256),
        ("conv 3x3 256->256 dilated 8, 1/4", 4, (h // 4, w // 4, 256), conv(256, 256, 8),
         g * quarter * 9 * 256 * 256),
        ("TRANSPOSE_CONV 256->128, 1/4->1/2", 1, (h // 4, w // 4, 256),
         transposed(256, 128, (h // 2, w // 2)), g * quarter * 16 * 256 * 128),
        ("sub-pixel conv 256->128, 1/4->1/2", 1, (h // 4, w // 4, 256), subpixel(256, 128),
         g * quarter * 16 * 256 * 128),
        ("TRANSPOSE_CONV 128->64, 1/2->full", 1, (h // 2, w // 2, 128),
         transposed(128, 64, (h, w)), g * half * 16 * 128 * 64),
        ("sub-pixel conv 128->64, 1/2->full", 1, (h // 2, w // 2, 128), subpixel(128, 64),
         g * half * 16 * 128 * 64),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="120 x 180, 3 runs")
    args = parser.parse_args()
    if args.quick:
        args.height, args.width, args.runs = 120, 180, 3

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    print(
        f"{args.height} x {args.width}, {args.threads} threads, median of {args.runs}; "
        f"tensorflow {tf.__version__}\n"
    )
    print("| layer | per frame | TF ms | TF GFLOP/s | TFLite ms | TFLite GFLOP/s | TFLite / TF |")
    print("|---|---|---|---|---|---|---|")
    for name, count, shape, fn, gflop in cases(args.height, args.width, rng):
        x = rng.random((1, *shape), dtype=np.float32)
        spec = tf.TensorSpec((1, *shape), tf.float32)
        function = tf.function(fn, input_signature=[spec])
        concrete = function.get_concrete_function()
        model = tf.lite.TFLiteConverter.from_concrete_functions([concrete], function).convert()
        interpreter = Interpreter(model_content=model, num_threads=args.threads)
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]
        interpreter.set_tensor(index, x)
        tensor = tf.constant(x)
        engines = {"tf": functools.partial(function, tensor), "lite": interpreter.invoke}
        times = {key: [] for key in engines}
        for run in engines.values():  # warm-up
            run()
        for _ in range(args.runs):
            for key, run in engines.items():
                start = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - start)
        tf_s, lite_s = (float(np.median(times[key])) for key in ("tf", "lite"))
        print(
            f"| {name} | {count} | {tf_s * 1e3:.1f} | {gflop / tf_s:.0f} | {lite_s * 1e3:.1f} "
            f"| {gflop / lite_s:.0f} | {lite_s / tf_s:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
