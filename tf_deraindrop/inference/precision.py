"""Inference precision: float32, or bfloat16 where the hardware runs it natively.

A generator trained in float32 runs in bfloat16 from a cast copy of its
weights (nothing is re-trained): the copy is built from the generator's
config under the `mixed_bfloat16` policy, so the convolutions compute in
bfloat16 with float32 variables and float32 outputs. On a CPU with
AVX512_BF16 or AMX, oneDNN runs those convolutions faster than float32
(1.7x with AVX512_BF16 on an AMD EPYC, `benchmarks/bench_precision.py`; 3x
with AMX on a Xeon, `benchmarks/bench_generator.py`); without them
TensorFlow emulates bfloat16 and is slower than float32, so `auto` only
picks it where the CPU flags (or a GPU of compute capability 8.0 and up)
say it is native.

`auto` also checks the model itself: the first time a generator runs under
`auto`, its bfloat16 copy and its float32 self derain a small probe image,
and bfloat16 is kept only if the two outputs are at least `AUTO_MIN_PSNR`
apart in PSNR; a generator whose activations bfloat16 cannot carry stays in
float32. The probe is small (cheap), and a probe scores higher than a whole
frame does, so the bar sits above the 40 dB that a full frame must reach.

Example:
    >>> from tf_deraindrop.inference.precision import choose_precision
    >>> choose_precision("auto", native=True, probe_psnr=52.0)
    'bfloat16'
    >>> choose_precision("auto", native=False)
    'float32'
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

#: What `--precision` and `derain(..., precision=)` accept.
PRECISIONS = ("auto", "float32", "bfloat16")

#: CPU flags (Linux `/proc/cpuinfo`) of native bfloat16 arithmetic: the
#: AVX-512 dot products, or AMX tiles with their bfloat16 multiply.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

#: Lowest PSNR (dB, outputs clipped to [0, 1]) of bfloat16 against float32
#: on a whole 480 x 720 frame for `auto` to keep bfloat16.
FRAME_MIN_PSNR = 40.0

#: The bar on the probe (`PROBE_SIZE`). A probe scores higher than a whole
#: frame of the same generator (benchmarks/bench_precision.py, real photos at
#: 480 x 720): random He-initialised weights score 42.3 dB on the probe
#: (41.3 to 42.5 on crops of the photos) but 39.3 to 40.3 on whole frames;
#: a trained generator 55.0 on the probe and 54.9 to 56.3 on frames. The
#: probe must clear the frame's 40 dB by 3 dB.
AUTO_MIN_PSNR = FRAME_MIN_PSNR + 3.0

#: Size of the probe image `auto` checks a generator on (multiples of 4).
PROBE_SIZE = (96, 128)


def read_cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where there is no such file).

    Example:
        >>> "avx512_bf16" in read_cpu_flags()  # doctest: +SKIP
        True
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                # x86 says "flags", ARM "Features"; the first processor stands for all.
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """Compute capability `(major, minor)` of each GPU TensorFlow sees (`(0, 0)` if unknown)."""
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (RuntimeError, ValueError):
            details = {}
        found.append(tuple(details.get("compute_capability") or (0, 0)))
    return found


def native_bfloat16(
    cpu_flags: frozenset[str] | None = None,
    gpus: list[tuple[int, int]] | None = None,
) -> tuple[bool, str]:
    """Whether the device TensorFlow runs on computes bfloat16 natively, and why.

    A GPU takes precedence (TensorFlow places the model there): compute
    capability 8.0 (Ampere) and up has bfloat16 tensor cores. Otherwise the
    CPU needs one of `BF16_CPU_FLAGS`.

    Args:
        cpu_flags: the CPU's flags (default: `read_cpu_flags()`).
        gpus: compute capabilities (default: `gpu_compute_capabilities()`).

    Example:
        >>> native_bfloat16(frozenset({"avx2"}), gpus=[])
        (False, 'the CPU has no avx512_bf16 or amx_bf16')
    """
    if gpus is None:
        gpus = gpu_compute_capabilities()
    if gpus:
        major, minor = gpus[0]
        if major >= 8:
            return True, f"GPU of compute capability {major}.{minor}"
        return False, f"GPU of compute capability {major}.{minor} (bfloat16 needs 8.0)"
    flags = read_cpu_flags() if cpu_flags is None else cpu_flags
    found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if found:
        return True, f"the CPU has {' and '.join(found)}"
    return False, f"the CPU has no {' or '.join(BF16_CPU_FLAGS)}"


def choose_precision(
    requested: str, native: bool, probe_psnr: float | None = None, min_psnr: float | None = None
) -> str:
    """The precision to compute in: `float32` or `bfloat16`.

    A pure function of what is asked and what was measured: an explicit
    `float32` or `bfloat16` is honoured; `auto` is bfloat16 only where the
    hardware runs it natively and (when measured) the probe's PSNR of
    bfloat16 against float32 reaches `min_psnr`.

    Args:
        requested: one of `PRECISIONS`.
        native: whether the hardware computes bfloat16 natively.
        probe_psnr: the probe's PSNR (None: not measured, not checked).
        min_psnr: the bar (default `AUTO_MIN_PSNR`).

    Raises:
        ValueError: an unknown precision.

    Example:
        >>> choose_precision("auto", native=True, probe_psnr=41.0)
        'float32'
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if not native:
        return "float32"
    bar = AUTO_MIN_PSNR if min_psnr is None else min_psnr
    return "bfloat16" if probe_psnr is None or probe_psnr >= bar else "float32"


def _policy_precision(generator) -> str:
    name = generator.dtype_policy.name
    return {"float32": "float32", "mixed_bfloat16": "bfloat16"}.get(name, name)


def cast_generator(generator, precision: str):
    """A new, built generator of the same class and config computing in `precision`.

    Its weights are the generator's, as float32 variables (the `mixed_*`
    policies keep variables in float32 and cast them to the compute dtype).

    Example:
        >>> fast = cast_generator(generator, "bfloat16")  # doctest: +SKIP
    """
    from tf_deraindrop.models.dtype import with_dtype_policy

    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]
    return with_dtype_policy(generator, policy)


def probe_image(height: int = PROBE_SIZE[0], width: int = PROBE_SIZE[1]) -> np.ndarray:
    """A fixed smooth scene with bright drop-like blobs, float32 `(H, W, 3)` in [0, 1]."""
    rng = np.random.default_rng(14)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = 0.45 + 0.15 * np.sin(2 * np.pi * (yy / height + xx / (2 * width)))[..., None]
    image = image * np.array([0.9, 1.0, 1.1], np.float32)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, height / 8)
        image += 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
    image += rng.normal(0, 0.02, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _probe_from(sample) -> np.ndarray:
    """The centre `PROBE_SIZE` crop of an image (reflect-padded if smaller), or `probe_image()`."""
    if sample is None:
        return probe_image()
    from tf_deraindrop.inference.tiling import pad_to
    from tf_deraindrop.utils.images import to_float_rgb

    rgb = to_float_rgb(np.asarray(sample))
    ph, pw = PROBE_SIZE
    h, w = rgb.shape[:2]
    y, x = max(0, (h - ph) // 2), max(0, (w - pw) // 2)
    crop = rgb[y : y + ph, x : x + pw]
    return np.ascontiguousarray(pad_to(crop, ph, pw))


def probe_psnr(reference, candidate, sample=None) -> float:
    """PSNR (dB) of `candidate`'s output against `reference`'s on the probe (eager, small)."""
    from tf_deraindrop.metrics import psnr

    x = _probe_from(sample)[None]
    expected = np.asarray(reference(x, training=False)["outputs"][-1], np.float32)
    out = np.asarray(candidate(x, training=False)["outputs"][-1], np.float32)
    return psnr(np.clip(out, 0, 1), np.clip(expected, 0, 1))


@dataclass
class Resolved:
    """The model to run and how it was chosen.

    Attributes:
        model: the generator itself or its cached cast copy.
        precision: `float32` or `bfloat16` (or the generator's own policy
            name, such as `mixed_float16`, when nothing was asked).
        reason: one line for a log (`evaluate` prints it).
        probe_psnr: the `auto` probe's PSNR, where measured.
    """

    model: object
    precision: str
    reason: str
    probe_psnr: float | None = None

    def __str__(self) -> str:
        return f"{self.precision} ({self.reason})"


class _Entry:
    def __init__(self, fingerprint):
        self.fingerprint = fingerprint
        self.copies: dict[str, object] = {}
        self.probe_psnr: float | None = None


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _fingerprint(generator) -> np.ndarray:
    """Per-variable sums: cheap, and any training step or `set_weights` changes them."""
    from keras import ops

    sums = [ops.sum(ops.cast(v.value, "float32")) for v in generator.weights]
    return np.asarray(ops.convert_to_numpy(ops.stack(sums)), np.float64)


def _entry(generator) -> _Entry:
    fingerprint = _fingerprint(generator)
    entry = _CACHE.get(generator)
    if entry is None or not np.array_equal(entry.fingerprint, fingerprint, equal_nan=True):
        entry = _CACHE[generator] = _Entry(fingerprint)
    return entry


def resolve_generator(
    generator, precision: str | None = "auto", sample=None, *, native: bool | None = None
) -> Resolved:
    """The generator to run for `precision`, cast once and cached per generator.

    The cast copy is kept (weakly keyed on `generator`) with a fingerprint
    of the weights: repeated calls reuse it, and a generator whose weights
    changed since (training, `set_weights`) gets a fresh copy.

    Args:
        generator: a built `Generator` or `LiteGenerator` (any dtype policy).
        precision: one of `PRECISIONS`, or None to run the generator as it is.
        sample: an image for `auto`'s probe (its centre crop; default a fixed
            synthetic scene).
        native: override the hardware check (default `native_bfloat16()`).

    Returns:
        A `Resolved` with the model, the precision and the reason.

    Raises:
        ValueError: an unknown precision.

    Example:
        >>> resolved = resolve_generator(generator, "auto")  # doctest: +SKIP
        >>> print(resolved)  # doctest: +SKIP
        bfloat16 (the CPU has avx512_bf16; probe 52.4 dB >= 43 dB)
    """
    own = _policy_precision(generator)
    if precision is None:
        return Resolved(generator, own, "the generator's own dtype policy")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    with _LOCK:
        entry = _entry(generator)

        def model_for(name: str):
            if own == name:
                return generator
            if name not in entry.copies:
                entry.copies[name] = cast_generator(generator, name)
            return entry.copies[name]

        if precision != "auto":
            return Resolved(model_for(precision), precision, "asked for")
        if native is None:
            is_native, why = native_bfloat16()
        else:
            is_native, why = native, "native" if native else "not native (forced)"
        if not is_native:
            return Resolved(model_for("float32"), "float32", why)
        if entry.probe_psnr is None:
            entry.probe_psnr = probe_psnr(model_for("float32"), model_for("bfloat16"), sample)
        chosen = choose_precision("auto", True, entry.probe_psnr)
        relation = ">=" if chosen == "bfloat16" else "<"
        reason = f"{why}; probe {entry.probe_psnr:.1f} dB {relation} {AUTO_MIN_PSNR:g} dB"
        return Resolved(model_for(chosen), chosen, reason, entry.probe_psnr)


def clear_cache() -> None:
    """Drops every cached cast copy (they are also dropped with their generator)."""
    with _LOCK:
        _CACHE.clear()
