"""`deraindrop prepare`: every planted fault is found and named."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from tf_deraindrop.cli import prepare as prepare_cli
from tf_deraindrop.data import prepare
from tf_deraindrop.data.masks import compute_mask
from tf_deraindrop.synthetic.classic import render_raindrops
from tf_deraindrop.utils.images import read_image, write_image

SIZE = (64, 80)


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random texture (phase correlation needs structure)."""
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    big = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w + 16, h + 16)))
    return big.astype(np.float32) / 255.0


def _write_pair(root, key, rainy, clean):
    write_image(root / "data" / f"{key}_rain.png", rainy)
    write_image(root / "gt" / f"{key}_clean.png", clean)


@pytest.fixture()
def broken(tmp_path):
    """Three good pairs, and one of each fault."""
    rng = np.random.default_rng(0)
    root = tmp_path / "split"
    h, w = SIZE
    for key in ("0", "1", "2"):
        clean = _scene(rng, h, w)[:h, :w]
        rainy, _ = render_raindrops(clean, seed=int(key))
        _write_pair(root, key, rainy, clean)
    # 3: rainy without its clean partner; 4: clean without its rainy partner.
    write_image(root / "data" / "3_rain.png", _scene(rng, h, w)[:h, :w])
    write_image(root / "gt" / "4_clean.png", _scene(rng, h, w)[:h, :w])
    # 5: sizes differ.
    _write_pair(root, "5", _scene(rng, h, w)[:h, :w], _scene(rng, h, w)[: h - 8, :w])
    # 6: truncated PNG.
    _write_pair(root, "6", _scene(rng, h, w)[:h, :w], _scene(rng, h, w)[:h, :w])
    data = (root / "data" / "6_rain.png").read_bytes()
    (root / "data" / "6_rain.png").write_bytes(data[: len(data) // 2])
    # 7: the rainy image's scene moved by (dy, dx) = (+3, -2) px.
    scene = _scene(rng, h, w)
    _write_pair(root, "7", scene[5 - 3 : 5 - 3 + h, 5 + 2 : 5 + 2 + w], scene[5 : 5 + h, 5 : 5 + w])
    # A file that is not an image, and one with a bad name.
    (root / "data" / "readme.txt").write_text("notes")
    write_image(root / "gt" / "8_ground_truth.png", _scene(rng, h, w)[:h, :w])
    return root


def test_every_planted_fault_is_reported(broken, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    argv = ["--data-dir", str(broken), "--min-size", "32", "--contact-sheet", str(sheet)]
    status = prepare_cli.main(argv + ["--quiet"])
    out = capsys.readouterr().out
    assert status == 1
    table = out[out.index("problem(s)") :]
    lines = table.splitlines()
    assert lines[1].split() == ["problem", "file", "detail"]

    def row(kind, name):
        found = [line for line in lines if line.startswith(kind) and name in line]
        assert found, f"{kind} for {name} not in\n{table}"
        return found[0]

    assert "no gt/3_clean" in row("missing partner", "3_rain.png")
    assert "no data/4_rain" in row("missing partner", "4_clean.png")
    assert "80 x 64, but 5_clean.png is 80 x 56" in row("size mismatch", "5_rain.png")
    row("unreadable", "6_rain.png")
    found = re.search(r"\(dy, dx\) = \(([-+.\d]+), ([-+.\d]+)\)", row("misaligned", "7_rain.png"))
    assert (float(found[1]), float(found[2])) == pytest.approx((3.0, -2.0), abs=0.3)
    row("not an image", "readme.txt")
    row("bad name", "8_ground_truth.png")
    assert len(lines) == 3 + 7  # title, header, rule, one row per fault
    assert "8 pairs, 3 good" in out

    # Masks for the good pairs only, equal to compute_mask; a contact sheet.
    assert sorted(p.name for p in (broken / "mask").iterdir()) == [
        "0_mask.png",
        "1_mask.png",
        "2_mask.png",
    ]
    for key in "012":
        mask = np.asarray(Image.open(broken / "mask" / f"{key}_mask.png")) == 255
        rainy = read_image(broken / "data" / f"{key}_rain.png")
        clean = read_image(broken / "gt" / f"{key}_clean.png")
        np.testing.assert_array_equal(mask, compute_mask(rainy, clean))
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width == 3 * 240
        assert image.height > 3 * 192  # three rows of 240 x 192 thumbnails
    assert not list(broken.rglob(".*"))


def test_shift_estimate_and_threshold_flags(broken, capsys):
    report = prepare.check_dataset(broken, write_masks=False, max_shift=5, min_size=32)
    pairs = {p.key: p for p in report.pairs}
    assert pairs["7"].ok
    assert pairs["7"].shift == pytest.approx((3.0, -2.0), abs=0.3)
    assert max(abs(v) for v in pairs["0"].shift) < 0.5
    strict = pairs["0"].coverage
    loose = prepare.check_dataset(
        broken, write_masks=False, mask_kwargs={"threshold": 10 / 255}, min_size=32
    )
    assert {p.key: p for p in loose.pairs}["0"].coverage > strict
    # Too small for training crops by default.
    kinds = {p.kind for p in prepare.check_dataset(broken, write_masks=False).all_problems()}
    assert "too small" in kinds


def test_existing_masks_are_kept_unless_overwritten(broken, capsys):
    exact = np.zeros(SIZE, np.uint8)
    exact[10:20, 10:20] = 255
    write_image(broken / "mask" / "0_mask.png", np.repeat(exact[..., None], 3, -1))
    prepare_cli.main(
        ["--data-dir", str(broken), "--min-size", "32", "--quiet", "--contact-pairs", "0"]
    )
    assert "1 existing kept" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(broken / "mask" / "0_mask.png"))[..., 0], exact)
    prepare_cli.main(
        ["--data-dir", str(broken), "--min-size", "32", "--quiet", "--overwrite-masks"]
    )
    assert not np.array_equal(np.asarray(Image.open(broken / "mask" / "0_mask.png")), exact)


def test_empty_and_missing_folders(tmp_path, capsys):
    (tmp_path / "empty" / "data").mkdir(parents=True)
    (tmp_path / "empty" / "gt").mkdir()
    assert prepare_cli.main(["--data-dir", str(tmp_path / "empty"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert out.count("empty folder") == 2 and "0 pairs, 0 good" in out

    (tmp_path / "half" / "data").mkdir(parents=True)
    write_image(tmp_path / "half" / "data" / "0_rain.png", np.zeros((40, 40, 3), np.float32))
    assert prepare_cli.main(["--data-dir", str(tmp_path / "half"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "missing folder" in out and "half/gt" in out

    assert prepare_cli.main(["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    (tmp_path / "root" / "test_a" / "data").mkdir(parents=True)
    assert prepare_cli.main(["--data-dir", str(tmp_path / "root")]) == 2
    assert "splits test_a" in capsys.readouterr().err


def test_good_dataset_to_tfrecords(tmp_path, capsys):
    tf = pytest.importorskip("tensorflow")
    from tf_deraindrop.data.records import find_tfrecords, parse_example

    rng = np.random.default_rng(3)
    root = tmp_path / "good"
    for key in range(3):
        clean = _scene(rng, *SIZE)[: SIZE[0], : SIZE[1]]
        _write_pair(root, key, render_raindrops(clean, seed=key)[0], clean)
    argv = ["--data-dir", str(root), "--min-size", "32", "--quiet", "--num-shards", "2"]
    assert prepare_cli.main(argv + ["--tfrecords", str(tmp_path / "rec")]) == 0
    assert "no problems found" in capsys.readouterr().out
    files = find_tfrecords(tmp_path / "rec")
    assert [f.rsplit("/", 1)[1] for f in files] == [
        "good-00000-of-00002.tfrecord",
        "good-00001-of-00002.tfrecord",
    ]
    examples = list(tf.data.TFRecordDataset(files).map(parse_example))
    assert sorted(e["name"].numpy() for e in examples) == [b"0", b"1", b"2"]
    for e in examples:
        key = e["name"].numpy().decode()
        rainy = np.asarray(Image.open(root / "data" / f"{key}_rain.png"))
        np.testing.assert_array_equal(e["rainy"].numpy(), rainy)
        mask = np.asarray(Image.open(root / "mask" / f"{key}_mask.png"))
        np.testing.assert_array_equal(e["mask"].numpy()[..., 0], mask)


def test_real_pair(raindrop_pairs_dir, tmp_path, capsys):
    argv = ["--data-dir", str(raindrop_pairs_dir), "--mask-dir", str(tmp_path / "mask")]
    argv += ["--contact-sheet", str(tmp_path / "sheet.png"), "--quiet"]
    assert prepare_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "1 pairs, 1 good" in out and "mean 20.9 %" in out
    shift = float(out.split("shift (px, larger axis): median ")[1].split(",")[0])
    assert shift < 0.5
    assert (tmp_path / "mask" / "0_mask.png").is_file() and (tmp_path / "sheet.png").is_file()
