"""Inference precision: native bfloat16 detection, `auto`'s choice, the cached cast copy."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tf_deraindrop.inference import precision
from tf_deraindrop.inference.precision import choose_precision, native_bfloat16, read_cpu_flags

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f {extra}
bogomips\t: 4000

processor\t: 1
flags\t\t: fpu sse2 avx2 avx512f {extra}
"""


def _cpuinfo(tmp_path, extra: str) -> str:
    path = tmp_path / f"cpuinfo_{extra or 'plain'}"
    path.write_text(CPUINFO.format(extra=extra))
    return str(path)


@pytest.mark.parametrize(
    ("extra", "native"),
    [("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512_vnni", False), ("", False)],
)
def test_cpu_flags_decide_native_bfloat16(tmp_path, extra, native):
    flags = read_cpu_flags(_cpuinfo(tmp_path, extra))
    assert "avx512f" in flags
    found, reason = native_bfloat16(flags, gpus=[])
    assert found is native
    assert ("has no" in reason) is not native


def test_missing_cpuinfo_means_no_flags(tmp_path):
    assert read_cpu_flags(str(tmp_path / "absent")) == frozenset()
    assert native_bfloat16(frozenset(), gpus=[])[0] is False


def test_gpus_count_from_compute_capability_8():
    assert native_bfloat16(frozenset(), gpus=[(8, 0)])[0] is True
    assert native_bfloat16(frozenset(), gpus=[(9, 0)])[0] is True
    # A Turing GPU has no bfloat16 units, whatever the CPU has.
    assert native_bfloat16(frozenset({"avx512_bf16"}), gpus=[(7, 5)])[0] is False


def test_choose_precision_forced_on_and_off():
    for native in (True, False):
        assert choose_precision("float32", native) == "float32"
        assert choose_precision("bfloat16", native) == "bfloat16"
    assert choose_precision("auto", native=False, probe_psnr=99.0) == "float32"
    assert choose_precision("auto", native=True) == "bfloat16"
    bar = precision.AUTO_MIN_PSNR
    assert choose_precision("auto", native=True, probe_psnr=bar) == "bfloat16"
    assert choose_precision("auto", native=True, probe_psnr=bar - 0.1) == "float32"
    with pytest.raises(ValueError, match="float16"):
        choose_precision("float16", native=True)


@pytest.fixture(scope="module")
def generator():
    from tf_deraindrop.models import Generator

    g = Generator()
    g.build((None, None, None, 3))
    return g


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """`set(extra_flags)` makes the hardware check read a fake cpuinfo; no GPU."""
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    original = precision.read_cpu_flags

    def set_flags(extra: str) -> None:
        path = _cpuinfo(tmp_path, extra)
        monkeypatch.setattr(precision, "read_cpu_flags", lambda: original(path))

    precision.clear_cache()
    yield set_flags
    precision.clear_cache()


def _crop() -> np.ndarray:
    """A small odd-sized image (derain pads it to 32 x 48 and crops back)."""
    from tf_deraindrop.inference.precision import probe_image

    return (probe_image(32, 48)[:30, :45] * 255).astype(np.uint8)


def test_auto_follows_the_cpu_flags(generator, cpu, monkeypatch):
    cpu("avx512_bf16")
    monkeypatch.setattr(precision, "AUTO_MIN_PSNR", 0.0)
    resolved = precision.resolve_generator(generator, "auto")
    assert resolved.precision == "bfloat16"
    assert resolved.model.dtype_policy.name == "mixed_bfloat16"
    assert resolved.probe_psnr is not None and "avx512_bf16" in resolved.reason

    cpu("avx2")
    resolved = precision.resolve_generator(generator, "auto")
    assert resolved.precision == "float32" and resolved.model is generator
    assert "has no" in resolved.reason


def test_auto_keeps_float32_when_the_probe_falls_short(generator, cpu, monkeypatch):
    cpu("amx_bf16")
    monkeypatch.setattr(precision, "AUTO_MIN_PSNR", float("inf"))
    resolved = precision.resolve_generator(generator, "auto")
    assert resolved.precision == "float32" and resolved.model is generator
    assert f"{resolved.probe_psnr:.1f} dB <" in resolved.reason


def test_bfloat16_output_close_to_float32_and_cached(generator, cpu):
    from tf_deraindrop.inference.keras import derain
    from tf_deraindrop.metrics import psnr

    image = _crop()
    exact = derain(generator, image, precision="float32")
    fast = derain(generator, image, precision="bfloat16")
    assert fast.shape == exact.shape == image.shape and fast.dtype == np.uint8
    # bfloat16 keeps 8 bits of mantissa: close to float32, but not equal to it.
    assert psnr(fast, exact, peak=255) > 35.0

    first = precision.resolve_generator(generator, "bfloat16").model
    x = image[None, :28, :44].astype(np.float32) / 255
    raw_exact = np.asarray(generator(x)["outputs"][-1])
    raw_fast = np.asarray(first(x)["outputs"][-1])
    # bfloat16 keeps 8 bits of mantissa: close to float32, but not equal to it.
    assert raw_fast.dtype == np.float32 and not np.array_equal(raw_fast, raw_exact)
    assert psnr(np.clip(raw_fast, 0, 1), np.clip(raw_exact, 0, 1)) > 35.0
    assert first is precision.resolve_generator(generator, "bfloat16").model
    assert first is not generator
    for a, b in zip(first.get_weights(), generator.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_changed_weights_give_a_fresh_copy(cpu):
    from tf_deraindrop.models import Generator

    g = Generator()
    g.build((None, None, None, 3))
    first = precision.resolve_generator(g, "bfloat16").model
    weights = g.get_weights()
    weights[0] = weights[0] + 1.0
    g.set_weights(weights)
    second = precision.resolve_generator(g, "bfloat16").model
    assert second is not first
    np.testing.assert_array_equal(second.get_weights()[0], weights[0])


def test_none_runs_the_generator_as_it_is(generator):
    resolved = precision.resolve_generator(generator, None)
    assert resolved.model is generator and resolved.precision == "float32"
    with pytest.raises(ValueError, match="precision 'half'"):
        precision.resolve_generator(generator, "half")


def test_evaluate_prints_the_precision(tmp_path, generator_file, capsys):
    from tf_deraindrop.cli import evaluate

    rng = np.random.default_rng(0)
    for folder in ("data", "gt"):
        os.makedirs(tmp_path / folder)
    clean = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(clean).save(tmp_path / "gt" / "0_clean.png")
    Image.fromarray(255 - clean).save(tmp_path / "data" / "0_rain.png")
    argv = ["--weights", str(generator_file), "--data-dir", str(tmp_path), "--no-progress"]
    assert evaluate.main(argv + ["--precision", "bfloat16"]) == 0
    assert "Precision: bfloat16 (asked for)" in capsys.readouterr().out


def test_predict_refuses_bfloat16_for_a_tflite(tmp_path, capsys):
    from tf_deraindrop.cli import predict

    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not a model")
    argv = ["--weights", str(model), str(image), "-o", str(tmp_path / "out")]
    assert predict.main(argv + ["--precision", "bfloat16"]) == 2
    assert "--precision bfloat16" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
