"""`python -m tf_deraindrop.evaluate`: the published protocol over a Raindrop-layout folder."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
from PIL import Image

from tf_deraindrop.cli import evaluate
from tf_deraindrop.data import find_pairs
from tf_deraindrop.metrics import psnr_y, ssim_y

SIZE = (37, 45)  # odd on purpose: derain pads to 40 x 48 and crops back


def _layout(root, n=3, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root / "data")
    os.makedirs(root / "gt")
    arrays = []
    for k in range(n):
        clean = rng.integers(0, 256, SIZE + (3,), dtype=np.uint8)
        rainy = np.clip(clean.astype(int) + rng.integers(-40, 40, clean.shape), 0, 255)
        rainy = rainy.astype(np.uint8)
        Image.fromarray(rainy).save(root / "data" / f"{k}_rain.png")
        Image.fromarray(clean).save(root / "gt" / f"{k}_clean.png")
        arrays.append((rainy, clean))
    return arrays


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_input_baseline_on_the_real_pair(raindrop_pairs_dir, tmp_path, capsys):
    out = tmp_path / "baseline.csv"
    argv = ["--input-only", "--data-dir", str(raindrop_pairs_dir), "--csv", str(out)]
    assert evaluate.main(argv + ["--no-progress"]) == 0
    (row,) = _read_csv(out)
    # Published for this pair: 20.80 dB / 0.8092 on the Y channel.
    assert round(float(row["input_psnr"]), 2) == 20.80
    assert round(float(row["input_ssim"]), 4) == 0.8092
    assert row["psnr"] == "" and row["name"] == "0"
    printed = capsys.readouterr().out
    assert "20.80" in printed and "0.8092" in printed


def test_cli_with_a_keras_generator(tmp_path, generator_file, capsys):
    arrays = _layout(tmp_path / "set")
    out = tmp_path / "res" / "out.csv"
    argv = ["--weights", str(generator_file), "--data-dir", str(tmp_path / "set")]
    assert evaluate.main(argv + ["--csv", str(out), "--limit", "2"]) == 0
    rows = _read_csv(out)
    assert [r["name"] for r in rows] == ["0", "1"]
    assert list(rows[0]) == list(evaluate.COLUMNS)
    for row, (rainy, clean) in zip(rows, arrays):
        assert float(row["input_psnr"]) == pytest.approx(psnr_y(rainy, clean), abs=1e-4)
        assert float(row["input_ssim"]) == pytest.approx(ssim_y(rainy, clean), abs=1e-4)
        assert math.isfinite(float(row["psnr"])) and -1 <= float(row["ssim"]) <= 1
    printed = capsys.readouterr().out
    mean = np.mean([float(r["input_psnr"]) for r in rows])
    assert "over 2 pairs" in printed and f"{mean:.2f}" in printed
    assert not [p for p in os.listdir(out.parent) if p.endswith(".partial")]


class _Oracle:
    """A stand-in generator that returns each rainy image's clean partner."""

    def __init__(self, arrays):
        self.arrays = [(r.astype(np.float32) / 255, c.astype(np.float32) / 255) for r, c in arrays]

    def predict_on_batch(self, batch):
        h, w = SIZE
        for rainy, clean in self.arrays:
            if np.allclose(batch[0, :h, :w], rainy):
                padded = np.pad(clean, ((0, batch.shape[1] - h), (0, batch.shape[2] - w), (0, 0)))
                return {"outputs": [padded[None]], "attention": [batch[..., :1]]}
        raise AssertionError("unknown input")


def test_output_is_measured_against_clean(tmp_path):
    arrays = _layout(tmp_path)
    rows = evaluate.evaluate_pairs(find_pairs(tmp_path), _Oracle(arrays), progress=False)
    means = evaluate.summarize(rows)
    assert means["psnr"] == float("inf") and means["ssim"] == 1.0
    assert math.isfinite(means["input_psnr"]) and means["input_ssim"] < 1.0


def test_authors_checkpoint_is_accepted(tmp_path):
    torch = pytest.importorskip("torch")
    from tf_deraindrop.official.checkpoint import official_shapes

    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in official_shapes().items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        state[name] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
    torch.save(state, tmp_path / "gen.pkl")
    _layout(tmp_path / "set", n=1)
    out = tmp_path / "out.csv"
    argv = ["--weights", str(tmp_path / "gen.pkl"), "--data-dir", str(tmp_path / "set")]
    assert evaluate.main(argv + ["--csv", str(out), "--no-progress"]) == 0
    assert math.isfinite(float(_read_csv(out)[0]["psnr"]))


def test_errors_name_the_file(tmp_path, generator_file, capsys):
    _layout(tmp_path / "set", n=2)
    data_dir = str(tmp_path / "set")
    assert evaluate.main(["--weights", str(tmp_path / "nope.keras"), "--data-dir", data_dir]) == 2
    assert "nope.keras" in capsys.readouterr().err
    assert evaluate.main(["--input-only", "--data-dir", str(tmp_path / "absent")]) == 2
    assert "absent: no such folder" in capsys.readouterr().err
    not_a_model = tmp_path / "bad.keras"
    not_a_model.write_text("hello")
    assert evaluate.main(["--weights", str(not_a_model), "--data-dir", data_dir]) == 2
    assert "bad.keras" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--data-dir", data_dir])
    assert exit_info.value.code == 2
    assert "--weights is required" in capsys.readouterr().err


def test_bad_pairs_fail_or_are_skipped(tmp_path, capsys):
    _layout(tmp_path, n=3)
    Image.new("RGB", (20, 20)).save(tmp_path / "gt" / "1_clean.png")
    (tmp_path / "data" / "2_rain.png").write_bytes(b"\x89PNG truncated")
    argv = ["--input-only", "--data-dir", str(tmp_path), "--no-progress"]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "1_rain.png (45 x 37) and" in err and "differ in size" in err
    assert "Traceback" not in err
    out = tmp_path / "skip.csv"
    assert evaluate.main(argv + ["--skip-bad", "--csv", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 bad pairs" in err and "2_rain.png: not a readable image" in err
    assert [r["name"] for r in _read_csv(out)] == ["0"]
