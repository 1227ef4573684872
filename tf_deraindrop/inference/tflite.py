"""Running an exported `.tflite` generator on frames of any size (edge Linux boxes, tests).

A `.tflite` from `deraindrop export` has one static input size. A
camera frame of another size is covered with tiles of that size that
overlap; each tile goes through the model, and the overlaps are blended with
linear ramps so that no seam shows (`tf_deraindrop.inference.tiling`, which the Keras
`derain` uses too). A frame no larger than the model runs in one pass,
padded at the bottom and right by reflection to the model's size.

An exported `LiteGenerator` also has a `stream` signature for video: the
ConvLSTM state comes in with the frame and goes out with the result, so
that each frame after the first costs one recurrent step
(`LiteDerainer.stream`, or `carry_state=True`). The state belongs to the
whole frame: frames must have exactly the export size, with no tiles.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from tf_deraindrop.inference.tiling import blend_to_uint8
from tf_deraindrop.utils.images import to_float_rgb, to_uint8

#: Name of the signature, its input and its outputs in an exported model.
SIGNATURE = "derain"
INPUT = "image"
OUTPUT = "derained"
ATTENTION = "attention"

#: The video signature (`LiteGenerator.stream`): the frame (`INPUT`) and the
#: ConvLSTM state `HIDDEN`, `CELL` (1/4 size) in; `OUTPUT`, `ATTENTION` and
#: the state for the next frame, `NEXT_HIDDEN`, `NEXT_CELL`, out.
STREAM = "stream"
HIDDEN, CELL = "hidden", "cell"
NEXT_HIDDEN, NEXT_CELL = "next_hidden", "next_cell"
#: Metadata entry of a `.tflite` with a `stream` signature: JSON `{"steps": N}`,
#: the steps the first frame runs from the zero state (`stream` from the zero
#: state N times on the same frame is `LiteGenerator.stream` of the first frame).
STREAM_METADATA = "tf_deraindrop.stream"


#: XNNPACK delegate flags: int8 and uint8 operators (LiteRT's default) and
#: indirection buffers built at each run instead of kept per convolution.
#: Kept, those buffers take most of the memory: at 480 x 720 about 2 GB of
#: the 2.2 to 2.5 GB a model peaks at (`deraindrop benchmark`).
XNNPACK_QUANTIZED_OPS = 0x1 | 0x2
XNNPACK_TRANSIENT_INDIRECTION_BUFFER = 0x20


class LiteModelError(ValueError):
    """The file is missing, not a `.tflite` model, or not an exported generator."""


def load_interpreter(
    path: str | os.PathLike,
    threads: int | None = None,
    xnnpack: bool = True,
    allocate: bool = True,
):
    """Opens a `.tflite` file with LiteRT (`ai_edge_litert`).

    Args:
        path: the `.tflite` file.
        threads: CPU threads (None: LiteRT's default).
        xnnpack: apply the XNNPACK CPU delegate (LiteRT's default); False
            runs LiteRT's own kernels only.
        allocate: allocate the tensors (False: for reading the signature only).

    Raises:
        LiteModelError: no such file, or not a TFLite flatbuffer.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LiteModelError(f"{path}: no such file")
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = Interpreter(
            model_path=path, num_threads=threads, experimental_op_resolver_type=resolver
        )
        if allocate:
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise LiteModelError(f"{path}: not a TFLite model LiteRT can load ({err})") from err
    return interpreter


def read_metadata(path: str | os.PathLike, name: str) -> bytes | None:
    """The bytes of the metadata entry `name` of a `.tflite` file (None: no such entry)."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        data = f.read()
    model = schema.Model.GetRootAs(data, 0)
    for k in range(model.MetadataLength()):
        entry = model.Metadata(k)
        if entry.Name() is not None and entry.Name().decode() == name:
            buffer = model.Buffers(entry.Buffer())
            return b"" if buffer.DataIsNone() else buffer.DataAsNumpy().tobytes()
    return None


class LiteDerainer:
    """Removes raindrops with an exported `.tflite` generator, on frames of any size.

    Args:
        path: a `.tflite` written by `deraindrop export` (any mode,
            float32 or uint8 I/O, with or without the attention output).
        threads: CPU threads for LiteRT (None: its default).
        overlap: overlap of neighbouring tiles in pixels (default: a quarter
            of the model's shorter side). Larger overlaps hide seams better
            and cost more tiles.
        xnnpack: use the XNNPACK CPU delegate (LiteRT's default).
        low_memory: run through LiteRT's `CompiledModel` with XNNPACK's
            transient indirection buffers: at 480 x 720 the peak memory
            falls 4.7x (float32, to 0.53 GB) and 10x (int8, to 0.21 GB),
            for 1.09x and 1.45x the time. For boxes short of RAM.
        carry_state: `derain` runs `stream`: consecutive calls are frames of
            one video, the ConvLSTM state carried from each to the next
            (the model needs a `stream` signature: an exported
            `LiteGenerator`; frames of exactly the export size). `reset`
            starts a new video.

    Raises:
        LiteModelError: the file is not a `.tflite` with a `derain` signature,
            or has no `stream` signature for `carry_state`.

    Example:
        >>> derainer = LiteDerainer("derain_int8.tflite", threads=2)  # doctest: +SKIP
        >>> clean = derainer.derain(frame)  # uint8 RGB of the frame's size  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        overlap: int | None = None,
        xnnpack: bool = True,
        low_memory: bool = False,
        carry_state: bool = False,
    ):
        self.path = os.fspath(path)
        if low_memory and not xnnpack:
            raise ValueError("low_memory applies to the XNNPACK delegate; drop xnnpack=False")
        # With low_memory the interpreter only describes the signature; the
        # compiled model runs it.
        self.interpreter = load_interpreter(
            self.path, threads=threads, xnnpack=xnnpack and not low_memory, allocate=not low_memory
        )
        signatures = self.interpreter.get_signature_list()
        if SIGNATURE not in signatures or INPUT not in signatures[SIGNATURE]["inputs"]:
            raise LiteModelError(
                f"{self.path}: no '{SIGNATURE}' signature with an '{INPUT}' input "
                f"(found {signatures}); export it with deraindrop export"
            )
        self._runners = {k: self.interpreter.get_signature_runner(k) for k in signatures}
        # Per signature: (input details, output details) by name.
        self._io = {
            k: (r.get_input_details(), r.get_output_details()) for k, r in self._runners.items()
        }
        self._input = self._io[SIGNATURE][0][INPUT]
        outputs = self._io[SIGNATURE][1]
        if OUTPUT not in outputs:
            raise LiteModelError(f"{self.path}: the '{SIGNATURE}' signature has no '{OUTPUT}'")
        shape = tuple(int(d) for d in self._input["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise LiteModelError(f"{self.path}: input shape {shape}, expected (1, H, W, 3)")
        self.tile_size = shape[1:3]
        self.overlap = int(overlap) if overlap is not None else max(4, min(self.tile_size) // 4)
        self.has_attention = ATTENTION in outputs
        self.input_dtype = np.dtype(self._input["dtype"])
        self.has_stream = STREAM in signatures
        kind = "int8" if self._is_quantized() else "float"
        kernels = "XNNPACK" if xnnpack else "reference kernels"
        self.engine = f"LiteRT, {kind} .tflite, {threads or 'default'} threads, {kernels}"
        self.stream_steps = self._stream_steps() if self.has_stream else 0
        if carry_state and not self.has_stream:
            raise LiteModelError(
                f"{self.path}: no '{STREAM}' signature to carry the ConvLSTM state from frame "
                "to frame; export a LiteGenerator with deraindrop export"
            )
        self.carry_state = bool(carry_state)
        self._state = None
        self.low_memory = low_memory
        self._compiled = self._compile(threads) if low_memory else None

    def _is_quantized(self) -> bool:
        """Whether the model computes in int8 (any int8 tensor)."""
        details = self.interpreter.get_tensor_details()
        return any(np.dtype(d["dtype"]) == np.int8 for d in details)

    def _stream_steps(self) -> int:
        """The first frame's ConvLSTM steps (`STREAM_METADATA`); checks the `stream` signature."""
        inputs, outputs = self._io[STREAM]
        missing = {INPUT, HIDDEN, CELL} - set(inputs)
        missing |= {OUTPUT, ATTENTION, NEXT_HIDDEN, NEXT_CELL} - set(outputs)
        raw = read_metadata(self.path, STREAM_METADATA)
        try:
            steps = int(json.loads(raw)["steps"]) if raw is not None else 0
        except (ValueError, KeyError, TypeError):
            steps = 0
        if missing or steps < 1 or list(inputs[INPUT]["shape"]) != list(self._input["shape"]):
            raise LiteModelError(
                f"{self.path}: its '{STREAM}' signature is not an tf_deraindrop.export.tflite one "
                f"(missing {sorted(missing)} or the '{STREAM_METADATA}' metadata)"
            )
        return steps

    def _compile(self, threads: int | None):
        """The model as a LiteRT `CompiledModel` with transient indirection buffers."""
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        flags = XNNPACK_QUANTIZED_OPS | XNNPACK_TRANSIENT_INDIRECTION_BUFFER
        cpu = CpuOptions(num_threads=threads or 0, xnnpack_flags=flags)
        try:
            model = CompiledModel.from_file(
                self.path, options=Options(HardwareAccelerator.CPU, cpu_options=cpu)
            )
        except RuntimeError as err:
            raise LiteModelError(f"{self.path}: LiteRT could not compile it ({err})") from err
        buffers = {
            key: (
                {n: model.create_input_buffer_by_name(key, n) for n in inputs},
                {n: model.create_output_buffer_by_name(key, n) for n in outputs},
            )
            for key, (inputs, outputs) in self._io.items()
        }
        return model, buffers

    def _run(self, feeds: dict[str, np.ndarray], key: str = SIGNATURE) -> dict[str, np.ndarray]:
        if self._compiled is None:
            return self._runners[key](**feeds)
        model, buffers = self._compiled
        inputs, outputs = buffers[key]
        for name, value in feeds.items():
            inputs[name].write(value)
        model.run_by_name(key, inputs, outputs)
        result = {}
        details = self._io[key][1]
        for name, buffer in outputs.items():
            shape = tuple(int(d) for d in details[name]["shape"])
            result[name] = buffer.read(math.prod(shape), details[name]["dtype"]).reshape(shape)
        return result

    def _dequantize(self, name: str, value: np.ndarray, key: str = SIGNATURE) -> np.ndarray:
        detail = self._io[key][1][name]
        if np.dtype(detail["dtype"]) == np.float32:
            return value.astype(np.float32)
        if name == OUTPUT and np.dtype(detail["dtype"]) == np.uint8:
            # uint8 I/O: pixel values 0..255 (see tf_deraindrop.export.tflite).
            return value.astype(np.float32) / 255.0
        scale, zero_point = detail["quantization"]
        return (value.astype(np.float32) - zero_point) * scale

    def _quantize_state(self, name: str, value: np.ndarray) -> np.ndarray:
        """A float state as the `stream` input `name` takes it (float, or int8/uint8 steps)."""
        detail = self._io[STREAM][0][name]
        dtype = np.dtype(detail["dtype"])
        if dtype == np.float32:
            return np.ascontiguousarray(value, np.float32)
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        steps = np.round(value / scale) + zero_point
        return np.clip(steps, info.min, info.max).astype(dtype)

    def _image_feed(self, tile: np.ndarray) -> np.ndarray:
        feed = to_uint8(tile) if self.input_dtype == np.uint8 else tile.astype(self.input_dtype)
        return np.ascontiguousarray(feed[None])

    def run_tile(self, tile: np.ndarray, with_attention: bool = False) -> np.ndarray:
        """One pass of the model on a float32 tile of exactly `tile_size`.

        Returns float32 `(h, w, 3)` (not clipped for float models), with the
        attention map as a fourth channel when `with_attention`.
        """
        result = self._run({INPUT: self._image_feed(tile)})
        out = self._dequantize(OUTPUT, result[OUTPUT][0])
        if with_attention:
            out = np.concatenate([out, self._dequantize(ATTENTION, result[ATTENTION][0])], -1)
        return out

    def reset(self) -> None:
        """Forgets the carried ConvLSTM state: the next `stream` frame starts a new video."""
        self._state = None

    def stream(self, frame: np.ndarray, return_attention: bool = False):
        """One frame of a video through the `stream` signature, the ConvLSTM state carried.

        The first frame (after construction or `reset`) runs the model's
        `steps` ConvLSTM steps from the zero state, as `derain` does; each
        later frame one step from the state the frame before left, as
        `LiteGenerator.stream` (so the attention evolves smoothly and a frame
        costs one recurrent step). Frames must have exactly the export size:
        the state covers the whole frame, so there are no tiles.

        Args:
            frame: RGB, RGBA or grayscale; uint8, uint16 or float in [0, 1],
                `tile_size` high and wide.
            return_attention: also return the attention map, float32 `(H, W)`.

        Returns:
            uint8 RGB `(H, W, 3)`, or `(image, attention)`.

        Raises:
            ValueError: no `stream` signature, or a frame of another size.

        Example:
            >>> derainer = LiteDerainer("lite_int8.tflite", threads=2)  # doctest: +SKIP
            >>> clean = [derainer.stream(frame) for frame in frames]  # doctest: +SKIP
            >>> derainer.reset()  # before the next video  # doctest: +SKIP
        """
        if not self.has_stream:
            raise ValueError(
                f"{self.path} has no '{STREAM}' signature; export a LiteGenerator with "
                "deraindrop export to carry the ConvLSTM state"
            )
        image = to_float_rgb(np.asarray(frame))
        if image.shape[:2] != tuple(self.tile_size):
            h, w = self.tile_size
            raise ValueError(
                f"{self.path}: carrying the ConvLSTM state needs frames of exactly the export "
                f"size {h}x{w}, got {image.shape[0]}x{image.shape[1]}; export the model at the "
                "video's size (deraindrop export --height/--width) or derain without carrying the "
                "state (tiles, any size)"
            )
        feeds = {INPUT: self._image_feed(image)}
        state, runs = self._state, 1
        if state is None:
            zeros = np.zeros(self._io[STREAM][0][HIDDEN]["shape"], np.float32)
            state, runs = (zeros, zeros), self.stream_steps
        for _ in range(runs):
            feeds[HIDDEN] = self._quantize_state(HIDDEN, state[0])
            feeds[CELL] = self._quantize_state(CELL, state[1])
            result = self._run(feeds, STREAM)
            state = tuple(self._dequantize(n, result[n], STREAM) for n in (NEXT_HIDDEN, NEXT_CELL))
        self._state = state
        derained = to_uint8(self._dequantize(OUTPUT, result[OUTPUT][0], STREAM))
        if not return_attention:
            return derained
        return derained, self._dequantize(ATTENTION, result[ATTENTION][0], STREAM)[..., 0]

    def derain(self, image: np.ndarray, return_attention: bool = False):
        """Removes raindrops from one image of any size, like `tf_deraindrop.derain`.

        The tiles and the padding are those of `tf_deraindrop.derain(generator,
        image, tile=self.tile_size, overlap=self.overlap)`, which gives the
        same result from the Keras generator (to float rounding, or to the
        quantization of an int8 model). A frame whose size rounds up to the
        model's (multiples of 4) is also exactly the plain `derain` pass.

        Args:
            image: RGB, RGBA or grayscale; uint8, uint16 or float in [0, 1].
            return_attention: also return the final attention map `A_N`,
                float32 `(H, W)` (the model must be exported with
                `--with-attention`).

        Returns:
            uint8 RGB `(H, W, 3)` of the input's size, or `(image, attention)`.

        With `carry_state`, this is `stream` (frames of the export size only).
        """
        if self.carry_state:
            return self.stream(image, return_attention)
        if return_attention and not self.has_attention:
            raise ValueError(
                f"{self.path} has no attention output; export it with --with-attention"
            )
        return blend_to_uint8(
            lambda t: self.run_tile(t, with_attention=return_attention),
            image,
            self.tile_size,
            self.overlap,
            attention=return_attention,
        )
