"""Which fast paths this CPU gives: oneDNN, native bfloat16, int8 with VNNI; the CPU in words.

* **oneDNN**: TensorFlow's oneDNN kernels. TensorFlow turns them on by
  default only on x86 CPUs with AVX-512 VNNI, AVX512_BF16, AVX-VNNI or AMX
  (`ONEDNN_DEFAULT_FLAGS`); an AVX2-only CPU (an AMD EPYC of the Zen 2 or 3
  generation, say) runs the stock Eigen kernels unless
  `TF_ENABLE_ONEDNN_OPTS=1` is set before TensorFlow loads.
* **bfloat16**: native with AVX512_BF16 or AMX (or a GPU of compute
  capability 8.0 and up): `tf_deraindrop.inference.precision.native_bfloat16`.
  Without it `--precision auto` stays in float32 (emulated bfloat16 is slower).
* **int8 with VNNI**: XNNPACK's int8 kernels beat its float32 ones with
  AVX-512 VNNI, AVX-VNNI or AMX-INT8 dot products (`VNNI_CPU_FLAGS`).
  Without them an int8 `.tflite` is a quarter of the size but no faster
  than the float32 one.

`fast_paths()` puts the three in one line (`predict` and `export` print it
first); `cpu_description()` names the CPU behind a benchmark's figures.

Example:
    >>> int8_vnni(frozenset({"avx2", "fma"}))
    (False, 'no avx512_vnni, avx_vnni or amx_int8')
    >>> cpu_description(flags=frozenset({"avx2"}), model="AMD EPYC 7B12")
    'AMD EPYC 7B12 (AVX2, no AVX-512, no VNNI, no bf16, no AMX)'
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from tf_deraindrop.inference import precision

#: x86 CPU flags on which TensorFlow turns oneDNN on by default (neural-network
#: features: Cascade Lake and newer Xeons, Zen 4 and newer EPYCs).
ONEDNN_DEFAULT_FLAGS = (
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)

#: CPU flags of int8 dot products, which make XNNPACK's int8 faster than float32.
VNNI_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

#: `cpu_description`'s features: the name, and the flags of which any one will do.
_FEATURES = (
    ("AVX2", ("avx2",)),
    ("AVX-512", ("avx512f",)),
    ("VNNI", ("avx512_vnni", "avx_vnni")),
    ("bf16", precision.BF16_CPU_FLAGS),
    ("AMX", ("amx_tile",)),
)


def _flags(flags: frozenset[str] | None) -> frozenset[str]:
    # Through the module: tests that fake `precision.read_cpu_flags` fake it here too.
    return precision.read_cpu_flags() if flags is None else flags


def read_cpu_model(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (`platform.processor()` or the machine type where there is none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_description(flags: frozenset[str] | None = None, model: str | None = None) -> str:
    """The CPU and its features that matter here, for a benchmark's heading.

    Example:
        >>> cpu_description()  # doctest: +SKIP
        'AMD EPYC 9B14 (AVX2, AVX-512, VNNI, bf16, no AMX)'
    """
    flags = _flags(flags)
    model = read_cpu_model() if model is None else model
    named = [
        name if any(flag in flags for flag in wanted) else f"no {name}"
        for name, wanted in _FEATURES
    ]
    return f"{model} ({', '.join(named)})"


def int8_vnni(flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether the CPU has int8 dot products (`VNNI_CPU_FLAGS`), and which."""
    flags = _flags(flags)
    found = [flag for flag in VNNI_CPU_FLAGS if flag in flags]
    if found:
        return True, " and ".join(found)
    return False, f"no {', '.join(VNNI_CPU_FLAGS[:-1])} or {VNNI_CPU_FLAGS[-1]}"


def onednn_default(flags: frozenset[str], environ=None) -> tuple[bool, str]:
    """Whether TensorFlow turns oneDNN on, from `TF_ENABLE_ONEDNN_OPTS` and the CPU flags.

    What TensorFlow decides when it loads (`onednn_enabled` asks it); this
    is the rule, for where it has not loaded, and for tests.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
    if value in ("1", "true"):
        return True, "TF_ENABLE_ONEDNN_OPTS=1"
    if value in ("0", "false"):
        return False, "TF_ENABLE_ONEDNN_OPTS=0"
    found = [flag for flag in ONEDNN_DEFAULT_FLAGS if flag in flags]
    if found:
        return True, f"TensorFlow's default with {found[0]}"
    return False, "TensorFlow's default without AVX-512 VNNI, bf16 or AMX"


def onednn_enabled(flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether the TensorFlow in this process uses oneDNN, and why (loads TensorFlow)."""
    flags = _flags(flags)
    on, why = onednn_default(flags)
    try:
        from tensorflow.python.util import _pywrap_util_port

        on = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return on, why
    if on != onednn_default(flags)[0]:
        why = "as TensorFlow reports"
    return on, why


@dataclass(frozen=True)
class FastPaths:
    """What `fast_paths` found; `str()` is the line `predict` and `export` print."""

    onednn: bool
    onednn_reason: str
    bfloat16: bool
    bfloat16_reason: str
    vnni: bool
    vnni_reason: str

    def __str__(self) -> str:
        onednn = f"oneDNN {'on' if self.onednn else 'off'} ({self.onednn_reason})"
        if self.bfloat16:
            bf16 = f"bfloat16 native ({self.bfloat16_reason})"
        else:
            bf16 = f"bfloat16 not native ({self.bfloat16_reason}: auto stays float32)"
        if self.vnni:
            int8 = f"int8 with VNNI ({self.vnni_reason})"
        else:
            int8 = "int8 without VNNI (smaller, no faster than float32 TFLite)"
        return f"Fast paths: {onednn}; {bf16}; {int8}"


def fast_paths(flags: frozenset[str] | None = None, gpus=None) -> FastPaths:
    """oneDNN, bfloat16 and int8 on this machine (`gpus`: as `precision.native_bfloat16`)."""
    flags = _flags(flags)
    onednn = onednn_enabled(flags)
    bf16 = precision.native_bfloat16(flags, gpus)
    vnni = int8_vnni(flags)
    return FastPaths(*onednn, *bf16, *vnni)
