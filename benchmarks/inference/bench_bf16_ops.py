"""Where bfloat16 time goes on this CPU: the generator's ops, float32 against bfloat16.

Runs the generator's frozen export graph (`tf_deraindrop.export.frozen.freeze`) and its
bfloat16 copy (every float32 constant and op cast) at 480 x 720 in one
process, traces one run of each, and sums the time per op type. The
convolutions' arithmetic rate in GFLOP/s (2 per multiply-add, from the
graph's shapes) is set beside the rate of one large 3 x 3 convolution alone
(256 to 256 channels at 120 x 180, constant weights, median of 5), which is
near what the CPU can do in each precision. If both precisions run the
generator's convolutions at a similar share of that rate, the speed-up of
bfloat16 is the ratio of the two rates: the hardware's, not the code's.

    python benchmarks/inference/bench_bf16_ops.py --data DIR [--weights generator.keras]
"""

from __future__ import annotations

import collections
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from benchmarks import common  # noqa: E402

CONVOLUTIONS = ("Conv2D", "DepthwiseConv2dNative")


def conv_flops(graph) -> float:
    """Floating-point operations of the graph's convolutions (2 per multiply-add)."""
    import numpy as np

    total = 0.0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            kernel = op.inputs[1].shape
            total += 2.0 * np.prod(op.outputs[0].shape[:3]) * np.prod(kernel)
        elif op.type == "DepthwiseConv2dNative":
            total += 2.0 * np.prod(op.outputs[0].shape) * np.prod(op.inputs[1].shape[:2])
    return total


def session_config(threads: int):
    import tensorflow as tf

    return tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
    )


def profile(graph_def, input_name: str, output_name: str, image, threads: int, repeats: int = 3):
    """`(median seconds, {op type: traced seconds}, convolution FLOPs)` of one graph."""
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    inputs = graph.get_tensor_by_name(input_name)
    output = graph.get_tensor_by_name(output_name)
    feed = {inputs: image.astype(inputs.dtype.as_numpy_dtype)}
    with tf.compat.v1.Session(graph=graph, config=session_config(threads)) as session:
        # The warm-up call optimizes the graph and lays out the weights, once.
        seconds = common.median_time(lambda: session.run(output, feed), repeats, warmup=1)
        metadata = tf.compat.v1.RunMetadata()
        options = tf.compat.v1.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE)
        session.run(output, feed, options=options, run_metadata=metadata)
    per_type: collections.Counter = collections.Counter()
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            label = node.timeline_label
            kind = label.split(" = ")[1].split("(")[0] if " = " in label else node.node_name
            per_type[kind] += node.all_end_rel_micros / 1e6
    return seconds, per_type, conv_flops(graph)


def peak_rate(dtype: str, threads: int, size=(120, 180), channels: int = 256) -> float:
    """GFLOP/s of one 3 x 3 convolution with constant weights (median of 5)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(dtype, (1, *size, channels))
        kernel = tf.constant(rng.normal(0, 0.05, (3, 3, channels, channels)), dtype)
        output = tf.nn.relu(tf.nn.conv2d(image, kernel, 1, "SAME"))
    flops = 2.0 * np.prod(size) * 9 * channels * channels
    feed = {image: rng.random((1, *size, channels)).astype(image.dtype.as_numpy_dtype)}
    with tf.compat.v1.Session(graph=graph, config=session_config(threads)) as session:
        seconds = common.median_time(lambda: session.run(output, feed), repeats=5, warmup=1)
    return flops / seconds / 1e9


def main() -> None:
    cli = common.parser(__doc__, "a trained generator instead (.keras)", no_random=False)
    args = cli.parse_args()
    tf = common.tf_threads(args.threads)
    import numpy as np

    from tf_deraindrop.export.frozen import freeze
    from tf_deraindrop.export.int8.ranges import bfloat16_graph_def
    from tf_deraindrop.export.samples import fit_samples
    from tf_deraindrop.inference.precision import read_cpu_flags

    h, w = args.height, args.width
    image = fit_samples(common.read_photos(args.data, [common.HELD_OUT]), h, w, 1)[0][None]
    ((label, generator),) = common.compared_generators(args.weights, not args.weights)
    frozen = freeze(generator, h, w)
    flags = sorted(read_cpu_flags() & {"avx512_bf16", "amx_bf16", "avx512f"})
    report = common.Report()
    report.say(
        f"generator ops at {h} x {w}, {args.threads} threads, {label}; CPU flags: {flags}",
        "(op times are summed over a traced run; medians of 3 untraced runs for the totals)",
        "",
    )
    found = {}
    for precision, graph_def in (
        ("float32", frozen.graph_def),
        ("bfloat16", bfloat16_graph_def(frozen.graph_def)),
    ):
        found[precision] = profile(graph_def, frozen.input, frozen.outputs[0], image, args.threads)
    peaks = {precision: peak_rate(precision, args.threads) for precision in found}
    f32, bf16 = found["float32"], found["bfloat16"]
    report.say(
        f"  whole graph: float32 {f32[0]:.2f} s, bfloat16 {bf16[0]:.2f} s ({f32[0] / bf16[0]:.2f}x)"
    )
    kinds = sorted(set(f32[1]) | set(bf16[1]), key=lambda kind: -f32[1].get(kind, 0.0))
    report.say("", f"  {'op type':30s} {'float32 s':>10s} {'bfloat16 s':>11s} {'ratio':>7s}")
    for kind in kinds:
        a, b = f32[1].get(kind, 0.0), bf16[1].get(kind, 0.0)
        if max(a, b) >= 0.005:
            report.say(f"  {kind:30s} {a:10.3f} {b:11.3f} {a / max(b, 1e-9):6.2f}x")
    report.say("")
    for precision, (_, per_type, flops) in found.items():
        seconds = sum(t for kind, t in per_type.items() if "Conv" in kind)
        rate = flops / seconds / 1e9
        report.say(
            f"  {precision}: convolutions {flops / 1e9:.0f} GFLOP in {seconds:.3f} s = "
            f"{rate:.0f} GFLOP/s, {rate / peaks[precision]:.0%} of one large convolution's "
            f"{peaks[precision]:.0f} GFLOP/s"
        )
    ratio = peaks["bfloat16"] / peaks["float32"]
    report.say(f"  one large convolution, bfloat16 over float32: {ratio:.2f}x")
    report.write(
        args.out, "bf16_ops_cpu.txt", f"tensorflow {tf.__version__}, numpy {np.__version__}"
    )


if __name__ == "__main__":
    main()
