"""From a generator to `.tflite` bytes: the SavedModel, the conversion, the uint8 pixel ends.

The graph converted is `tf_deraindrop.export.graph.DeployGraph`, not `Generator.call`
(docs/architecture.md, section 9). A source with `deploy_stream_graph` (a
`LiteGenerator`) also gets the video signature `stream` (`tf_deraindrop.inference.tflite`):
the frame and the ConvLSTM state in, the result and the next state out.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

MODES = ("none", "float16", "dynamic", "int8")

#: Bytes per weight in each mode: the size a file should have, give or take 5%.
WEIGHT_BYTES = {"none": 4, "float16": 2, "dynamic": 1, "int8": 1}

#: Where `write_saved_model` notes the `stream` signature's first-frame steps
#: (`assets.extra` is the SavedModel's folder for files of other libraries).
STREAM_NOTE = os.path.join("assets.extra", "tf_deraindrop_stream.json")


def write_saved_model(
    generator,
    directory: str,
    height: int,
    width: int,
    uint8_io: bool = False,
    with_attention: bool = False,
    stream: bool = True,
) -> list[str]:
    """Writes a SavedModel with the `derain` signature (static shape `(1, H, W, 3)`).

    With `uint8_io` the signature takes and returns uint8, through two
    casts that `pixel_io` turns into the pixel scale after conversion (used
    by the float modes; int8 gets its uint8 ends from the converter).
    With `stream` and a source that has `deploy_stream_graph`, also the
    `stream` signature (`stream_signature`). Returns the signature keys.
    """
    import tensorflow as tf

    from tf_deraindrop.export.graph import DeployGraph
    from tf_deraindrop.inference.tflite import ATTENTION, OUTPUT

    # A model with its own export function (LiteGenerator) converts as it is.
    deploy = getattr(generator, "deploy_graph", None)
    graph = deploy() if deploy is not None else DeployGraph(generator)
    spec = tf.TensorSpec((1, height, width, 3), tf.uint8 if uint8_io else tf.float32, name="image")

    class Derain(tf.Module):
        @tf.function(input_signature=[spec])
        def derain(self, image):
            # The casts are placeholders: `pixel_io` gives them the scale 1/255.
            derained, attention = graph(tf.cast(image, tf.float32) if uint8_io else image)
            if uint8_io:
                derained = tf.cast(derained, tf.uint8)
            outputs = {OUTPUT: derained}
            if with_attention:
                outputs[ATTENTION] = attention
            return outputs

    module = Derain()
    signatures = {"derain": module.derain}
    if stream and hasattr(generator, "deploy_stream_graph"):
        module.stream = stream_signature(generator, spec, uint8_io)
        signatures["stream"] = module.stream
        os.makedirs(os.path.join(directory, os.path.dirname(STREAM_NOTE)), exist_ok=True)
        with open(os.path.join(directory, STREAM_NOTE), "w") as f:
            json.dump({"steps": int(generator.steps)}, f)
    tf.saved_model.save(module, directory, signatures=signatures)
    return list(signatures)


def stream_signature(source, spec, uint8_io: bool = False):
    """The `stream` signature's function: `source.deploy_stream_graph()` at `spec`'s size.

    Inputs `image` (as `derain`'s), `hidden` and `cell` (float32, the
    ConvLSTM state at 1/4 size); outputs `derained`, `attention`,
    `next_hidden` and `next_cell`. The state always comes in: a first frame
    passes the zero state `source.steps` times (`tf_deraindrop.inference.tflite`).
    """
    import tensorflow as tf

    from tf_deraindrop.inference.tflite import (
        ATTENTION,
        CELL,
        HIDDEN,
        NEXT_CELL,
        NEXT_HIDDEN,
        OUTPUT,
    )

    step = source.deploy_stream_graph()
    state = source.state_shape(int(spec.shape[1]), int(spec.shape[2]))
    specs = [spec] + [tf.TensorSpec(state, tf.float32, name=n) for n in (HIDDEN, CELL)]

    @tf.function(input_signature=specs)
    def stream(image, hidden, cell):
        derained, attention, hidden, cell = step(
            tf.cast(image, tf.float32) if uint8_io else image, hidden, cell
        )
        if uint8_io:
            derained = tf.cast(derained, tf.uint8)
        return {
            OUTPUT: derained,
            ATTENTION: attention,
            NEXT_HIDDEN: tf.identity(hidden),
            NEXT_CELL: tf.identity(cell),
        }

    return stream


def pixel_io(model: bytes) -> bytes:
    """Makes the uint8 `image` input and `derained` output carry pixels 0..255.

    Both ends get the quantization scale 1/255 and zero point 0, so that
    uint8 value `v` means `v / 255`:

    * float modes: the graph casts the uint8 input to float and the output
      back (placeholders written by `write_saved_model`). The input CAST
      becomes a DEQUANTIZE (`v / 255`) and the output CAST a QUANTIZE
      (`round(255 * O)`, saturating at 0 and 255, i.e. the clip to [0, 1]).
      XNNPACK takes both, where it takes no CAST; and a CAST at the start
      would split off the float16 weights' DEQUANTIZE ops as a partition
      of their own.
    * int8: the converter's uint8 interface keeps each end's calibrated
      scale; with the pixel scale instead, its QUANTIZE ops requantize
      between pixels and the int8 graph.
    """
    from ai_edge_litert import schema_py_generated as schema

    from tf_deraindrop.export.analysis import builtin_code
    from tf_deraindrop.inference.tflite import INPUT, OUTPUT

    ops = schema.BuiltinOperator
    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)

    def code(op) -> int:
        return builtin_code(tree.operatorCodes[op.opcodeIndex])

    def opcode_index(builtin: int) -> int:
        for index, c in enumerate(tree.operatorCodes):
            if builtin_code(c) == builtin:
                return index
        new = schema.OperatorCodeT()
        new.builtinCode, new.deprecatedBuiltinCode, new.version = builtin, builtin, 1
        tree.operatorCodes.append(new)
        return len(tree.operatorCodes) - 1

    ends = []
    for signature in tree.signatureDefs:  # `derain`, and `stream` where there is one
        subgraph = tree.subgraphs[signature.subgraphIndex]
        ends += [(m, "input", subgraph) for m in signature.inputs if m.name.decode() == INPUT]
        ends += [(m, "output", subgraph) for m in signature.outputs if m.name.decode() == OUTPUT]
    for end, side, subgraph in ends:
        index = end.tensorIndex
        tensor = subgraph.tensors[index]
        if tensor.type != schema.TensorType.UINT8:
            raise RuntimeError(f"expected a uint8 tensor for {end.name.decode()}")
        quantization = schema.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint = [1.0 / 255.0], [0]
        tensor.quantization = quantization
        touching = [
            op
            for op in subgraph.operators
            if index in (list(op.inputs) if side == "input" else list(op.outputs))
        ]
        for op in touching:
            if code(op) == ops.CAST:
                op.opcodeIndex = opcode_index(ops.DEQUANTIZE if side == "input" else ops.QUANTIZE)
                op.builtinOptionsType, op.builtinOptions = 0, None
            elif code(op) != ops.QUANTIZE:
                raise RuntimeError(f"unexpected op {code(op)} at the {side} {end.name.decode()}")
    return pack(tree)


def pack(tree) -> bytes:
    """The `.tflite` bytes of a schema `ModelT`."""
    import flatbuffers

    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def add_metadata(model: bytes, name: str, value: bytes) -> bytes:
    """`model` with a metadata entry `name` holding `value` (`inference.tflite.read_metadata`)."""
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(tree.buffers) - 1
    tree.metadata = (tree.metadata or []) + [entry]
    return pack(tree)


def signature_keys(saved_model: str) -> list[str]:
    """The signatures `write_saved_model` wrote: `["derain"]` or `["derain", "stream"]`."""
    from tensorflow.core.protobuf import saved_model_pb2

    from tf_deraindrop.inference.tflite import SIGNATURE, STREAM

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    found = proto.meta_graphs[0].signature_def
    return [key for key in (SIGNATURE, STREAM) if key in found]


def convert(
    saved_model: str,
    mode: str,
    representative=None,
    uint8_io: bool = False,
) -> bytes:
    """Converts the SavedModel's `derain` signature (and `stream`) to TFLite in the given mode.

    `derain` comes first: it is the model's first subgraph, the one a plain
    interpreter runs. A `representative` dataset yields `{"image": ...}`
    for `derain` alone, `(signature key, inputs)` pairs with `stream`.
    """
    import tensorflow as tf

    from tf_deraindrop.inference.tflite import STREAM, STREAM_METADATA

    keys = signature_keys(saved_model)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=keys)
    if mode != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is not None:
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Else the graph holds fake-quant nodes with fixed ranges (export.int8.calibrate):
        # the converter takes it as quantization-aware trained, and refuses the
        # int8-only op set without a dataset, so `float_ops` checks the result.
        if uint8_io:
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
    with warnings.catch_warnings():
        # The int8 calibrator uses the deprecated tf.lite.Interpreter inside.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        model = converter.convert()
    if mode == "int8" and representative is None:
        left = float_ops(model)
        if left:
            raise RuntimeError(
                f"fixed-range int8 conversion left {len(left)} ops in float "
                f"({', '.join(sorted(set(left)))}): a tensor has no range"
            )
    if uint8_io:
        model = pixel_io(model)
    if STREAM in keys:
        with open(os.path.join(saved_model, STREAM_NOTE), "rb") as f:
            model = add_metadata(model, STREAM_METADATA, f.read())
    return model


def float_ops(model: bytes) -> list[str]:
    """Names of the ops of a `.tflite` that compute in float (the ends' (DE)QUANTIZE aside).

    Every subgraph (signature) counts.
    """
    from ai_edge_litert import schema_py_generated as schema

    from tf_deraindrop.export.analysis import builtin_code

    names = {value: name for name, value in vars(schema.BuiltinOperator).items()}
    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    found = []
    for subgraph in tree.subgraphs:
        for op in subgraph.operators:
            code = builtin_code(tree.operatorCodes[op.opcodeIndex])
            if code in (schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE):
                continue
            if any(subgraph.tensors[i].type == schema.TensorType.FLOAT32 for i in op.outputs):
                found.append(names.get(code, str(code)))
    return found


def representative_dataset(samples: list[np.ndarray], progress: bool):
    """The converter's representative dataset: a callable yielding signature inputs."""
    from tqdm import tqdm

    def dataset():
        bar = tqdm(samples, desc="calibrate", unit="sample", disable=not progress, leave=False)
        for sample in bar:
            yield {"image": sample[None]}

    return dataset
