"""Running an exported `.tflite` generator on frames of any size (edge Linux boxes, tests).

A `.tflite` from `python -m export.tflite` has one static input size. A
camera frame of another size is covered with tiles of that size that
overlap; each tile goes through the model, and the overlaps are blended with
linear ramps so that no seam shows (`tf_deraindrop.tiling`, which the Keras
`derain` uses too). A frame no larger than the model runs in one pass,
padded at the bottom and right by reflection to the model's size.
"""

from __future__ import annotations

import math
import os

import numpy as np

from tf_deraindrop.images import to_uint8
from tf_deraindrop.tiling import blend_to_uint8

#: Name of the signature, its input and its outputs in an exported model.
SIGNATURE = "derain"
INPUT = "image"
OUTPUT = "derained"
ATTENTION = "attention"


#: XNNPACK delegate flags: int8 and uint8 operators (LiteRT's default) and
#: indirection buffers built at each run instead of kept per convolution.
#: Kept, those buffers take most of the memory: at 480 x 720 about 2 GB of
#: the 2.2 to 2.5 GB a model peaks at (`python -m export.benchmark`).
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


class LiteDerainer:
    """Removes raindrops with an exported `.tflite` generator, on frames of any size.

    Args:
        path: a `.tflite` written by `python -m export.tflite` (any mode,
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

    Raises:
        LiteModelError: the file is not a `.tflite` with a `derain` signature.

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
                f"(found {signatures}); export it with python -m export.tflite"
            )
        self._runner = self.interpreter.get_signature_runner(SIGNATURE)
        self._input = self._runner.get_input_details()[INPUT]
        outputs = self._runner.get_output_details()
        if OUTPUT not in outputs:
            raise LiteModelError(f"{self.path}: the '{SIGNATURE}' signature has no '{OUTPUT}'")
        self._outputs = outputs
        shape = tuple(int(d) for d in self._input["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise LiteModelError(f"{self.path}: input shape {shape}, expected (1, H, W, 3)")
        self.tile_size = shape[1:3]
        self.overlap = int(overlap) if overlap is not None else max(4, min(self.tile_size) // 4)
        self.has_attention = ATTENTION in outputs
        self.input_dtype = np.dtype(self._input["dtype"])
        self.low_memory = low_memory
        self._compiled = self._compile(threads) if low_memory else None

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
        inputs = {INPUT: model.create_input_buffer_by_name(SIGNATURE, INPUT)}
        outputs = {n: model.create_output_buffer_by_name(SIGNATURE, n) for n in self._outputs}
        return model, inputs, outputs

    def _run(self, feed: np.ndarray) -> dict[str, np.ndarray]:
        if self._compiled is None:
            return self._runner(**{INPUT: feed})
        model, inputs, outputs = self._compiled
        inputs[INPUT].write(feed)
        model.run_by_name(SIGNATURE, inputs, outputs)
        result = {}
        for name, buffer in outputs.items():
            detail = self._outputs[name]
            shape = tuple(int(d) for d in detail["shape"])
            result[name] = buffer.read(math.prod(shape), detail["dtype"]).reshape(shape)
        return result

    def _dequantize(self, name: str, value: np.ndarray) -> np.ndarray:
        detail = self._outputs[name]
        if np.dtype(detail["dtype"]) == np.float32:
            return value.astype(np.float32)
        if name == OUTPUT and np.dtype(detail["dtype"]) == np.uint8:
            # uint8 I/O: pixel values 0..255 (see export.tflite).
            return value.astype(np.float32) / 255.0
        scale, zero_point = detail["quantization"]
        return (value.astype(np.float32) - zero_point) * scale

    def run_tile(self, tile: np.ndarray, with_attention: bool = False) -> np.ndarray:
        """One pass of the model on a float32 tile of exactly `tile_size`.

        Returns float32 `(h, w, 3)` (not clipped for float models), with the
        attention map as a fourth channel when `with_attention`.
        """
        if self.input_dtype == np.uint8:
            feed = to_uint8(tile)
        else:
            feed = tile.astype(self.input_dtype)
        result = self._run(np.ascontiguousarray(feed[None]))
        out = self._dequantize(OUTPUT, result[OUTPUT][0])
        if with_attention:
            out = np.concatenate([out, self._dequantize(ATTENTION, result[ATTENTION][0])], -1)
        return out

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
        """
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
