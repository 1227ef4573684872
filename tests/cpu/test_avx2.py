"""CPU fast paths read from `/proc/cpuinfo` flags (faked here): oneDNN, bfloat16, int8 VNNI.

The machines in question: an AVX2-only AMD EPYC (Zen 2/3: no AVX-512,
oneDNN off by default), an AVX-512 one with VNNI and bf16 (Zen 4), and a
Xeon with AMX. No test depends on the CPU it runs on.
"""

from __future__ import annotations

import pytest

from tf_deraindrop.inference import cpu, precision

AVX2_EPYC = "fpu sse2 avx avx2 fma"
ZEN4_EPYC = AVX2_EPYC + " avx512f avx512_vnni avx512_bf16"
SAPPHIRE_RAPIDS = AVX2_EPYC + " avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16"
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: {model}
flags\t\t: {flags}

processor\t: 1
model name\t: {model}
flags\t\t: {flags}
"""


@pytest.fixture
def fake_cpu(monkeypatch, tmp_path):
    """`fake_cpu(flags, model)`: `/proc/cpuinfo` reads as this CPU's; no GPU, no env override."""
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    read_flags, read_model = precision.read_cpu_flags, cpu.read_cpu_model

    def set_cpu(flags: str, model: str = "AMD EPYC 7B12 64-Core Processor") -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(CPUINFO.format(model=model, flags=flags))
        monkeypatch.setattr(precision, "read_cpu_flags", lambda: read_flags(str(path)))
        monkeypatch.setattr(cpu, "read_cpu_model", lambda: read_model(str(path)))

    return set_cpu


def test_cpu_description_names_the_model_and_features(fake_cpu):
    fake_cpu(AVX2_EPYC)
    assert cpu.cpu_description() == (
        "AMD EPYC 7B12 64-Core Processor (AVX2, no AVX-512, no VNNI, no bf16, no AMX)"
    )
    fake_cpu(ZEN4_EPYC, "AMD EPYC 9B14 96-Core Processor")
    assert (
        cpu.cpu_description()
        == "AMD EPYC 9B14 96-Core Processor (AVX2, AVX-512, VNNI, bf16, no AMX)"
    )
    fake_cpu(SAPPHIRE_RAPIDS, "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz")
    assert cpu.cpu_description().endswith("(AVX2, AVX-512, VNNI, bf16, AMX)")


def test_model_name_falls_back_without_cpuinfo(tmp_path):
    assert cpu.read_cpu_model(str(tmp_path / "absent"))  # the platform's name, never empty
    assert cpu.cpu_description(frozenset(), "x").startswith("x (no AVX2,")


@pytest.mark.parametrize(
    "flags, vnni",
    [(AVX2_EPYC, False), (ZEN4_EPYC, True), (AVX2_EPYC + " avx_vnni", True), ("amx_int8", True)],
)
def test_vnni_flags(flags, vnni):
    found, reason = cpu.int8_vnni(frozenset(flags.split()))
    assert found is vnni and (reason.startswith("no ") is not vnni)


@pytest.mark.parametrize(
    "flags, env, on",
    [
        (AVX2_EPYC, None, False),  # what the user's EPYC got: the stock kernels
        (ZEN4_EPYC, None, True),
        (SAPPHIRE_RAPIDS, None, True),
        (AVX2_EPYC, "1", True),
        (AVX2_EPYC, "true", True),
        (ZEN4_EPYC, "0", False),
        (ZEN4_EPYC, "False", False),
    ],
)
def test_onednn_default_follows_the_flags_and_the_variable(flags, env, on):
    environ = {} if env is None else {"TF_ENABLE_ONEDNN_OPTS": env}
    found, reason = cpu.onednn_default(frozenset(flags.split()), environ)
    assert found is on
    assert ("TF_ENABLE_ONEDNN_OPTS" in reason) is (env is not None)


def test_avx2_line_promises_no_speed_up(fake_cpu, monkeypatch):
    fake_cpu(AVX2_EPYC)
    monkeypatch.setattr(cpu, "onednn_enabled", lambda flags: cpu.onednn_default(flags, {}))
    paths = cpu.fast_paths()
    assert (paths.onednn, paths.bfloat16, paths.vnni) == (False, False, False)
    line = str(paths)
    assert "\n" not in line and line.startswith("Fast paths: oneDNN off")
    assert "bfloat16 not native" in line and "auto stays float32" in line
    assert "int8 without VNNI" in line and "no faster than float32" in line


def test_zen4_and_amx_lines(fake_cpu, monkeypatch):
    monkeypatch.setattr(cpu, "onednn_enabled", lambda flags: cpu.onednn_default(flags, {}))
    for flags in (ZEN4_EPYC, SAPPHIRE_RAPIDS):
        fake_cpu(flags)
        line = str(cpu.fast_paths())
        assert "oneDNN on" in line and "bfloat16 native (the CPU has avx512_bf16" in line
        assert "int8 with VNNI (avx512_vnni" in line and "no faster" not in line


def test_onednn_enabled_asks_tensorflow():
    """In this process: whatever TensorFlow loaded with, reported as it is."""
    from tensorflow.python.util import _pywrap_util_port

    found, _ = cpu.onednn_enabled(frozenset())
    assert found is bool(_pywrap_util_port.IsMklEnabled())


def test_auto_precision_follows_the_same_flags(fake_cpu):
    """`--precision auto` on the AVX2 EPYC: float32, for the reason the line gives."""
    from tf_deraindrop.models import LiteGenerator

    student = LiteGenerator.from_preset("nano")
    student.build((None, None, None, 3))
    fake_cpu(AVX2_EPYC)
    precision.clear_cache()
    resolved = precision.resolve_generator(student, "auto")
    assert resolved.precision == "float32" and resolved.model is student
    assert resolved.reason in str(cpu.fast_paths(gpus=[]))


def test_predict_says_its_fast_paths_in_one_line(fake_cpu, monkeypatch, tmp_path, capsys):
    """`predict` prints the line first, for the CPU it finds (the AVX2 EPYC's here)."""
    import numpy as np
    from PIL import Image

    from tf_deraindrop.cli import predict
    from tf_deraindrop.models import LiteGenerator

    fake_cpu(AVX2_EPYC)
    monkeypatch.setattr(cpu, "onednn_enabled", lambda flags: cpu.onednn_default(flags, {}))
    student = LiteGenerator.from_preset("nano")
    student.build((None, None, None, 3))
    weights = tmp_path / "nano.keras"
    student.save(weights)
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "rainy.png")
    argv = ["--weights", str(weights), str(tmp_path / "rainy.png"), "--output", str(tmp_path / "o")]
    assert predict.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    paths = [line for line in lines if line.startswith("Fast paths:")]
    assert len(paths) == 1 and lines.index(paths[0]) < lines.index(
        next(line for line in lines if line.startswith("Engine:"))
    )
    assert "oneDNN off" in paths[0] and "int8 without VNNI" in paths[0]
    assert "Engine: Keras, float32 (the CPU has no avx512_bf16 or amx_bf16)" in lines
