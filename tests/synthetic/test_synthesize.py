"""Synthetic pairs in the Raindrop layout: files, determinism, bad clean photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tf_deraindrop.cli import synthesize as synthesize_cli
from tf_deraindrop.synthetic import synthesize
from tf_deraindrop.synthetic.synthesize import (
    SynthesisError,
    default_clean_images,
    synthesize_dataset,
)
from tf_deraindrop.utils.images import read_image


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_default_photos_are_real_colour_images():
    images = default_clean_images()
    names = [name for name, _ in images]
    assert {"astronaut", "coffee", "chelsea", "rocket"} <= set(names)
    for _, image in images:
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[-1] == 3
        assert min(image.shape[:2]) >= 256
        # Colour: the channels are not all equal.
        assert np.abs(image[..., 0] - image[..., 2]).mean() > 0.01


def test_layout_size_masks_and_determinism(tmp_path):
    # Smooth content (JPEG, part of the camera pipeline, would scramble pixel noise).
    blocks = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32)
    clean = [("a", np.kron(blocks, np.ones((10, 10, 1), np.float32)))]
    clean.append(("b", np.full((80, 60, 3), 0.5, np.float32)))
    n = synthesize_dataset(tmp_path / "one", clean, pairs_per_image=2, seed=3, size=(48, 64))
    assert n == 4
    expected = [f"data/{k}_rain.png" for k in range(4)]
    expected += [f"gt/{k}_clean.png" for k in range(4)]
    expected += [f"mask/{k}_mask.png" for k in range(4)]
    assert _files(tmp_path / "one") == sorted(expected)  # nothing half-written left
    for k in range(4):
        rainy = read_image(tmp_path / "one" / "data" / f"{k}_rain.png")
        gt = read_image(tmp_path / "one" / "gt" / f"{k}_clean.png")
        mask = np.asarray(Image.open(tmp_path / "one" / "mask" / f"{k}_mask.png"))
        assert rainy.shape == gt.shape == (48, 64, 3)
        assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
        assert (mask == 255).any()
    # The masks mark the drops: without the camera pipeline (which touches every
    # pixel), the masked pixels change far more than the rest (a faint halo).
    quiet = dict(noise=0, jpeg_quality=0, water_film=0, exposure_jitter=0, white_balance_jitter=0)
    synthesize_dataset(tmp_path / "q", clean, 2, seed=3, size=(48, 64), progress=False, **quiet)
    for k in range(4):
        rainy = read_image(tmp_path / "q" / "data" / f"{k}_rain.png")
        gt = read_image(tmp_path / "q" / "gt" / f"{k}_clean.png")
        mask = np.asarray(Image.open(tmp_path / "q" / "mask" / f"{k}_mask.png")) == 255
        diff = np.abs(rainy - gt).mean(axis=-1)
        assert mask.any() and diff[mask].mean() > 2.5 * diff[~mask].mean()
    # Same seed: same bytes; another seed: other drops.
    synthesize_dataset(tmp_path / "two", clean, pairs_per_image=2, seed=3, size=(48, 64))
    synthesize_dataset(tmp_path / "three", clean, pairs_per_image=2, seed=4, size=(48, 64))
    for name in expected:
        same = (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
        assert same, name
    other = (tmp_path / "three" / "mask/0_mask.png").read_bytes()
    assert other != (tmp_path / "one" / "mask/0_mask.png").read_bytes()


def test_cli_with_a_folder_of_odd_photos(tmp_path, capsys):
    rng = np.random.default_rng(1)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(photos / "gray.png")
    rgba = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(photos / "rgba.png")
    wide = rng.integers(0, 65536, (40, 48), dtype=np.uint16)
    Image.fromarray(wide).save(photos / "sixteen.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(photos / "tiny.png")
    (photos / "notes.txt").write_text("not a photo")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")

    out = tmp_path / "out"
    argv = ["--clean-dir", str(photos), "--out-dir", str(out), "--pairs-per-image", "1"]
    assert synthesize_cli.main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert "notes.txt: not an image or a video file" in err
    assert "broken.jpg" in err and "error:" in err

    assert synthesize_cli.main(argv + ["--quiet", "--keep-going"]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "tiny.png" in err and "too small" in err
    assert "2 pairs not written" in err
    # rgb, gray, rgba and 16-bit photos were converted and used.
    assert len(list((out / "gt").iterdir())) == 4
    assert not [p for p in out.rglob(".*")]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert synthesize_cli.main(["--clean-dir", str(empty), "--out-dir", str(out)]) == 2
    assert "no image or video files" in capsys.readouterr().err
    missing = str(tmp_path / "missing")
    assert synthesize_cli.main(["--clean-dir", missing, "--out-dir", str(out)]) == 2
    assert "missing: no such folder" in capsys.readouterr().err


def test_bad_arguments():
    with pytest.raises(SynthesisError, match="too small"):
        synthesize_dataset("/nonexistent", [np.zeros((64, 64, 3))], size=(16, 64))
    with pytest.raises(ValueError, match="contact_angle"):
        synthesize_dataset("/nonexistent", [np.zeros((64, 64, 3))], contact_angle=95)
    with pytest.raises(ValueError, match="unknown preset"):
        synthesize_dataset("/nonexistent", [np.zeros((64, 64, 3))], preset="fisheye")
    with pytest.raises(TypeError, match="unknown raindrop parameter"):
        synthesize_dataset("/nonexistent", [np.zeros((64, 64, 3))], drops=3)
    with pytest.raises(SynthesisError, match="pairs_per_image"):
        synthesize_dataset("/nonexistent", [np.zeros((64, 64, 3))], pairs_per_image=0)


def test_clean_dir_with_a_video_takes_a_frame_every_n_seconds(tmp_path, capsys):
    from tests.helpers.video import decode, make_video
    from tf_deraindrop.utils.images import to_float_rgb

    photos = tmp_path / "photos"
    photos.mkdir()
    # 24 frames at 24 fps: frames at 0, 0.25, 0.5 and 0.75 s with --every 0.25.
    make_video(photos / "drive.mp4", frames=24, size=(40, 48))
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / "a.png")
    (photos / "broken.mov").write_bytes(b"not a video")
    out = tmp_path / "out"
    argv = ["--clean-dir", str(photos), "--out-dir", str(out), "--pairs-per-image", "1"]
    assert synthesize_cli.main(argv + ["--every", "0.25", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipped: " in err and "broken.mov: not a video FFmpeg can read" in err
    assert len(list((out / "gt").iterdir())) == 5
    # In file-name order: a.png, then the video's frames at 0, 0.25, 0.5, 0.75 s.
    frames, _ = decode(photos / "drive.mp4")
    for k, index in enumerate([0, 6, 12, 18], start=1):
        gt = read_image(out / "gt" / f"{k}_clean.png")
        np.testing.assert_allclose(gt, to_float_rgb(frames[index]), atol=1 / 255)
    assert synthesize_cli.main(argv + ["--every", "0", "--quiet"]) == 2
    assert "--every 0" in capsys.readouterr().err

    # --clean-dir may be the video itself.
    sources, skipped = synthesize.clean_sources(photos / "drive.mp4", every=0.5)
    assert [name for name, _ in sources] == ["drive_00000000ms", "drive_00000500ms"]
    assert skipped == []


def test_preset_and_overrides_reach_the_renderer(tmp_path, capsys):
    """`synthesize` renders with the new renderer: its pairs equal `render_raindrops`
    on the same seed, preset and overrides; the CLI passes --preset and --coverage."""
    from tf_deraindrop.synthetic import render_raindrops

    photo = np.random.default_rng(5).random((60, 80, 3), dtype=np.float32)
    synthesize_dataset(
        tmp_path / "a", [("p", photo)], pairs_per_image=1, seed=2, preset="phone", coverage=0.1
    )
    expected, mask = render_raindrops(
        photo, seed=np.random.default_rng([2, 0, 0]), preset="phone", coverage=0.1
    )
    written = read_image(tmp_path / "a" / "data" / "0_rain.png")
    np.testing.assert_allclose(written, expected, atol=0.5 / 255 + 1e-6)
    written_mask = np.asarray(Image.open(tmp_path / "a" / "mask" / "0_mask.png")) == 255
    assert np.array_equal(written_mask, mask)

    Image.fromarray((photo * 255).astype(np.uint8)).save(tmp_path / "p.png")
    (tmp_path / "photos").mkdir()
    (tmp_path / "p.png").rename(tmp_path / "photos" / "p.png")
    argv = ["--clean-dir", str(tmp_path / "photos"), "--pairs-per-image", "1", "--quiet"]
    assert (
        synthesize_cli.main(argv + ["--out-dir", str(tmp_path / "b"), "--preset", "dashcam"]) == 0
    )
    dry = argv + ["--out-dir", str(tmp_path / "c"), "--coverage", "0", "0"]
    assert synthesize_cli.main(dry) == 0
    assert not (np.asarray(Image.open(tmp_path / "c" / "mask" / "0_mask.png")) == 255).any()
    with pytest.raises(SystemExit):
        synthesize_cli.main(argv + ["--out-dir", str(tmp_path / "d"), "--preset", "x"])
    assert "invalid choice" in capsys.readouterr().err
