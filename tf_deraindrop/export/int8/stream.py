"""The `stream` signature of a `LiteGenerator` export: int8 ranges, and its checks.

The `stream` signature (`tf_deraindrop.export.convert.stream_signature`) runs one
ConvLSTM step from a state that comes in as an input. int8 needs ranges for
that state and for every tensor of the step, measured where the state has
the values it has on video: here the state of a still scene, the frame
repeated, from the first frame (`steps` steps from the zero state) over
`CALIBRATION_FRAMES` later frames of one step each, whose min and max are
pooled. Both calibrators do this:

* `--calibrator converter`: the representative dataset yields
  `("derain", inputs)` for each sample and `("stream", inputs)` for each of
  its frames, with the state of the Keras model (`stream_dataset`); the
  converter calibrates each signature's subgraph on its own inputs.
* `--calibrator tensorflow` (`tf_deraindrop.export.int8.calibrate`'s fixed ranges): the ranges
  of the per-frame graph do not fit the stream graph (other tensors, and
  two more inputs), so the stream graph is frozen too and its tensors'
  ranges recorded in TensorFlow on a chain of frames (`stream_ranges`); it
  gets its own fake-quant nodes (`FixedRangeStream`).

Quantization-aware fine-tuning (`--qat-steps`) trains the per-frame graph;
the stream graph takes its trained weights, equalization undone
(`tf_deraindrop.export.int8.qat_graph.with_trained_weights`), and gets ranges of its own
measured with them, as above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Frames after the first over which the state's ranges are pooled.
CALIBRATION_FRAMES = 4


@dataclass
class StreamGraph:
    """The stream graph frozen at a size: `(image, hidden, cell) -> (O, A, hidden, cell)`.

    Attributes:
        frozen: the graph (`FrozenGraph.input` is the image placeholder's name).
        hidden, cell: the state placeholders' tensor names.
    """

    frozen: object
    hidden: str
    cell: str


def freeze_stream(generator, height: int, width: int) -> StreamGraph:
    """Traces `generator.deploy_stream_graph()` at `(1, height, width, 3)` into a `StreamGraph`."""
    import tensorflow as tf

    from tf_deraindrop.export.frozen import FrozenGraph
    from tf_deraindrop.inference.tflite import CELL, HIDDEN, INPUT

    step = generator.deploy_stream_graph()
    state = generator.state_shape(height, width)
    specs = [tf.TensorSpec((1, height, width, 3), tf.float32, name=INPUT)]
    specs += [tf.TensorSpec(state, tf.float32, name=n) for n in (HIDDEN, CELL)]
    concrete = tf.function(lambda *x: tuple(step(*x))).get_concrete_function(*specs)
    image, hidden, cell = (t.name for t in concrete.graph.inputs)
    outputs = tuple(t.name for t in concrete.graph.outputs)
    frozen = FrozenGraph(concrete.graph.as_graph_def(), image, outputs, height, width)
    return StreamGraph(frozen, hidden, cell)


def _frame_chain(generator, stream: StreamGraph, points: Sequence[str], frames: int):
    """A graph `image -> ...` with the first frame, then `frames` stream steps on the image.

    Returns `(chain, names)`: the chain as a `FrozenGraph`, and per point of
    the stream graph the names of that tensor in each of its frames.
    """
    import tensorflow as tf

    from tf_deraindrop.export.frozen import FrozenGraph

    frozen = stream.frozen
    first = generator.deploy_stream_graph()
    names: dict[str, list[str]] = {point: [] for point in points}
    spec = tf.TensorSpec((1, frozen.height, frozen.width, 3), tf.float32, name="image")

    def chain(image):
        _, _, hidden, cell = first(image)
        for k in range(frames):
            feeds = {frozen.input: image, stream.hidden: hidden, stream.cell: cell}
            outputs = tf.graph_util.import_graph_def(
                frozen.graph_def,
                input_map=feeds,
                return_elements=list(frozen.outputs),
                name=f"frame{k}",
            )
            for point in points:
                fed = feeds.get(point)
                names[point].append(fed.name if fed is not None else f"frame{k}/{point}")
            hidden, cell = outputs[2], outputs[3]
        return hidden, cell

    concrete = tf.function(chain).get_concrete_function(spec)
    graph = concrete.graph.as_graph_def()
    outputs = tuple(t.name for t in concrete.graph.outputs)
    image = concrete.graph.inputs[0].name
    return FrozenGraph(graph, image, outputs, frozen.height, frozen.width), names


def stream_ranges(
    generator,
    stream: StreamGraph,
    samples: Sequence[np.ndarray],
    frames: int = CALIBRATION_FRAMES,
    progress: bool = False,
):
    """int8 ranges of the stream graph's tensors, pooled over `frames` frames of each sample.

    Returns:
        `(values, recorded)`: tensor name to `(min, max)`, the sigmoid and
        tanh inputs and the ReLU'd sums' addends clipped (`export.int8.limits`), and the
        `Ranges` of the chain (its time and precision).
    """
    from tf_deraindrop.export.int8.limits import relu_sum_ranges, saturated_ranges
    from tf_deraindrop.export.int8.ranges import quantization_points, record_ranges

    points = quantization_points(stream.frozen)
    chain, names = _frame_chain(generator, stream, points, frames)
    wanted = sorted({name for chained in names.values() for name in chained})
    recorded = record_ranges(chain, samples, points=wanted, progress=progress)
    values = {}
    for point, chained in names.items():
        lows, highs = zip(*(recorded.values[name] for name in chained))
        values[point] = (min(lows), max(highs))
    return relu_sum_ranges(stream.frozen, saturated_ranges(stream.frozen, values)), recorded


class FixedRangeStream:
    """A per-frame source (`FakeQuantGraph`) plus the stream graph with its own fixed ranges.

    What `write_saved_model` converts for int8 with `--calibrator tensorflow`:
    `deploy_graph` is the per-frame source's, `deploy_stream_graph` the
    stream graph with fake-quant nodes.

    Args:
        per_frame: the `FakeQuantGraph` of `tf_deraindrop.export.int8.calibrate`.
        stream: the `StreamGraph`.
        ranges: its tensors' ranges (`stream_ranges`).
        generator: the `LiteGenerator` (its `steps` and `state_shape`).
    """

    def __init__(self, per_frame, stream: StreamGraph, ranges: dict, generator):
        from tf_deraindrop.export.int8.fake_quant import insert_fake_quant

        self.per_frame, self.stream = per_frame, stream
        self.graph_def, self.outputs = insert_fake_quant(stream.frozen, ranges)
        self.steps = generator.steps
        self.state_shape = generator.state_shape

    def deploy_graph(self):
        return self.per_frame.deploy_graph()

    def deploy_stream_graph(self):
        import tensorflow as tf

        frozen = self.stream.frozen

        def run(image, hidden, cell):
            return tuple(
                tf.graph_util.import_graph_def(
                    self.graph_def,
                    input_map={
                        frozen.input: image,
                        self.stream.hidden: hidden,
                        self.stream.cell: cell,
                    },
                    return_elements=list(self.outputs),
                    name="stream",
                )
            )

        return run


def stream_dataset(
    generator, samples: Sequence[np.ndarray], progress: bool, frames: int = CALIBRATION_FRAMES
):
    """The converter's representative dataset for both signatures: `(key, inputs)` pairs.

    Each sample is a `derain` input, and a still scene of `frames` frames
    for `stream`, with the state the Keras model carries.
    """
    from tqdm import tqdm

    from tf_deraindrop.inference.tflite import CELL, HIDDEN, INPUT, SIGNATURE, STREAM
    from tf_deraindrop.models.dtype import float32_generator

    model = float32_generator(generator)

    def dataset():
        bar = tqdm(samples, desc="calibrate", unit="sample", disable=not progress, leave=False)
        for sample in bar:
            image = np.asarray(sample, np.float32)[None]
            yield SIGNATURE, {INPUT: image}
            _, _, state = model.stream(image)
            for _ in range(frames):
                hidden, cell = (np.asarray(t, np.float32) for t in state)
                yield STREAM, {INPUT: image, HIDDEN: hidden, CELL: cell}
                _, _, state = model.stream(image, state)

    return dataset


def int8_stream(
    generator,
    calibrated: tuple,
    samples: Sequence[np.ndarray],
    calibrator: str,
    qat_steps: int = 0,
    progress: bool = False,
):
    """`int8_calibration`'s `(source, dataset, summary)` with the `stream` calibration added.

    `calibrated` is what `int8_calibration` returned for `samples` (float32
    `(H, W, 3)` at the export size); a generator without `stream` passes
    it through unchanged. The stream graph takes the weights of
    `calibrated`'s `FakeQuantGraph`: its biases corrected for the int8
    kernels, and after `qat_steps` of fine-tuning, the fine-tuned weights.
    """
    from tf_deraindrop.export.frozen import freeze
    from tf_deraindrop.export.int8.qat_graph import with_trained_weights

    source, calibration, summary = calibrated
    if not hasattr(generator, "deploy_stream_graph"):
        return source, calibration, summary
    if calibrator == "converter":
        how = f"; the 'stream' signature over {CALIBRATION_FRAMES} frames a sample"
        return source, stream_dataset(generator, samples, progress), summary + how
    height, width = np.shape(samples[0])[:2]
    stream = freeze_stream(generator, height, width)
    carried = with_trained_weights(
        stream.frozen, freeze(generator, height, width), source.frozen, source.scales
    )
    stream = StreamGraph(carried, stream.hidden, stream.cell)
    trained = " (the fine-tuned weights)" if qat_steps else " (the corrected biases)"
    values, recorded = stream_ranges(generator, stream, samples, progress=progress)
    how = (
        f"; the 'stream' signature{trained}: ranges of {len(values)} tensors over "
        f"{CALIBRATION_FRAMES} frames a sample, {recorded.seconds_per_sample:.2f} s per sample"
    )
    return FixedRangeStream(source, stream, values, generator), None, summary + how


def signature_model(model: bytes, key: str) -> bytes:
    """A `.tflite` holding only the subgraph of signature `key` (as its first and only one).

    LiteRT lists the nodes after delegation for the first subgraph alone
    (`tf_deraindrop.export.analysis`): this makes another signature's subgraph the first.
    """
    from ai_edge_litert import schema_py_generated as schema

    from tf_deraindrop.export.convert import pack

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    (signature,) = [s for s in tree.signatureDefs if s.signatureKey.decode() == key]
    tree.subgraphs = [tree.subgraphs[signature.subgraphIndex]]
    signature.subgraphIndex = 0
    tree.signatureDefs = [signature]
    return pack(tree)


def stream_coverage(path: str):
    """`tf_deraindrop.export.analysis.xnnpack_coverage` of the `stream` signature of a `.tflite`."""
    import os
    import tempfile

    from tf_deraindrop.export.analysis import xnnpack_coverage
    from tf_deraindrop.inference.tflite import STREAM

    with open(path, "rb") as f:
        alone = signature_model(f.read(), STREAM)
    with tempfile.TemporaryDirectory() as folder:
        single = os.path.join(folder, "stream.tflite")
        with open(single, "wb") as f:
            f.write(alone)
        return xnnpack_coverage(single)


def stream_notes(path: str, generator, images: Sequence[np.ndarray] = ()) -> list[str]:
    """Report lines on the `stream` signature of an export (none without one).

    Its XNNPACK coverage and, given images, its output against the Keras
    model's `stream` with the state carried over them as consecutive frames.
    """
    from tf_deraindrop.export.samples import fit_samples
    from tf_deraindrop.inference.tflite import STREAM, LiteDerainer, load_interpreter
    from tf_deraindrop.metrics import psnr
    from tf_deraindrop.models.dtype import float32_generator

    if STREAM not in load_interpreter(path, allocate=False).get_signature_list():
        return []  # before allocating a full generator's tensors for nothing
    derainer = LiteDerainer(path)
    lines = [
        f"Stream signature (state carried; the first frame {derainer.stream_steps} steps): "
        f"XNNPACK delegate: {stream_coverage(path)}"
    ]
    if len(images):
        model, state, scores = float32_generator(generator), None, []
        for sample in fit_samples(list(images), *derainer.tile_size, 3, seed=1):
            expected, _, state = model.stream(sample[None], state)
            got = derainer.stream(sample).astype(np.float32) / 255.0
            scores.append(psnr(got, np.clip(np.asarray(expected)[0], 0, 1)))
        lines.append(
            f"Stream signature against the Keras model over 3 frames, state carried: PSNR "
            f"{', '.join(f'{p:.2f}' for p in scores)} dB (the uint8 output rounded)"
        )
    return lines
