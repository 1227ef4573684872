"""`python -m tf_deraindrop.predict`: files and folders in, derained PNGs and videos out."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tf_deraindrop.cli import predict
from tf_deraindrop.utils.visualize import attention_heatmap

SIZE = (37, 45)


def _image(rng, mode="RGB"):
    rgb = rng.integers(0, 256, SIZE + (3,), dtype=np.uint8)
    return Image.fromarray(rgb).convert(mode)


def test_files_and_folders(tmp_path, generator_file, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    _image(rng).save(folder / "a.jpg", quality=95)
    _image(rng, "L").save(folder / "b.png")
    _image(rng, "RGBA").save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "single.png"
    _image(rng).save(single)
    out = tmp_path / "out"
    argv = ["--weights", str(generator_file), str(folder), str(single), "--output", str(out)]
    assert predict.main(argv + ["--save-attention", "--precision", "float32"]) == 0
    written = sorted(os.listdir(out))
    assert written == sorted(
        [f"{n}.png" for n in "abc"]
        + [f"{n}_attention.png" for n in "abc"]
        + ["single.png", "single_attention.png"]
    )
    for name in written:
        with Image.open(out / name) as img:
            assert img.size == (SIZE[1], SIZE[0]) and img.mode == "RGB"
    out_text = capsys.readouterr().out
    assert "Wrote 4 derained images" in out_text
    assert "Engine: Keras, " in out_text  # which engine and precision ran, said at start

    # The files hold what `derain` gives for the same input and generator.
    from tf_deraindrop.inference.keras import derain
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.utils.images import read_image

    generator = load_generator(generator_file)
    expected, attention = derain(generator, read_image(folder / "b.png"), return_attention=True)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "b.png")), expected)
    heat = np.asarray(Image.open(out / "b_attention.png"))
    np.testing.assert_array_equal(heat, attention_heatmap(attention))


def test_images_and_a_video_in_one_folder(tmp_path, generator_file, capsys):
    from tests.helpers.video import decode, make_video

    rng = np.random.default_rng(3)
    folder = tmp_path / "in"
    folder.mkdir()
    _image(rng).save(folder / "photo.png")
    make_video(folder / "clip.mov", frames=4, size=(32, 48))
    (folder / "clip.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nnot a picture\n")
    out = tmp_path / "out"
    argv = ["--weights", str(generator_file), str(folder), "-o", str(out), "--compare"]
    assert predict.main(argv) == 0
    assert "Wrote 1 derained image and 1 derained video" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == [
        "clip.mp4",
        "clip_compare.mp4",
        "photo.png",
        "photo_compare.png",
    ]
    with Image.open(out / "photo_compare.png") as img:
        assert img.size == (2 * SIZE[1] + 4, SIZE[0])
    frames, _ = decode(out / "clip.mp4")
    assert len(frames) == 4 and frames[0].shape == (32, 48, 3)

    # A second run refuses to replace them, before the model loads; --overwrite replaces.
    missing = ["--weights", str(tmp_path / "missing.keras"), str(folder), "-o", str(out)]
    assert predict.main(missing) == 2
    assert "already exist; pass --overwrite" in capsys.readouterr().err
    before = (out / "photo.png").stat().st_mtime_ns
    assert predict.main(argv + ["--overwrite", "--no-progress"]) == 0
    assert (out / "photo.png").stat().st_mtime_ns != before


def test_heatmap_scale():
    ramp = np.linspace(-0.5, 1.5, 41)[None, :]
    heat = attention_heatmap(ramp).astype(float)
    brightness = heat @ [0.299, 0.587, 0.114]
    inside = (ramp[0] >= 0) & (ramp[0] <= 1)
    assert np.all(np.diff(brightness[0, inside]) > 0)  # brighter with more attention
    # Values outside [0, 1] are clipped to the ends of the scale.
    np.testing.assert_array_equal(heat[0, 0], heat[0, np.argmax(inside)])
    np.testing.assert_array_equal(heat[0, -1], heat[0, np.nonzero(inside)[0][-1]])
    assert attention_heatmap(np.zeros((4, 5, 1))).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="attention map"):
        attention_heatmap(np.zeros((2, 4, 5)))


def test_input_errors_come_before_loading_weights(tmp_path, capsys):
    missing_weights = str(tmp_path / "nope.keras")
    out = str(tmp_path / "out")
    assert predict.main(["--weights", missing_weights, str(tmp_path / "x.png"), "-o", out]) == 2
    assert "x.png: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert predict.main(["--weights", missing_weights, str(tmp_path / "empty"), "-o", out]) == 2
    assert "empty: no images" in capsys.readouterr().err
    rng = np.random.default_rng(1)
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        _image(rng).save(tmp_path / sub / "frame.png")
    argv = ["--weights", missing_weights, str(tmp_path / "one"), str(tmp_path / "two"), "-o", out]
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert "one/frame.png and" in err and "two/frame.png would both be written" in err
    argv = ["--weights", missing_weights, str(tmp_path / "one"), "-o", str(tmp_path / "one")]
    assert predict.main(argv) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert predict.main(["--weights", missing_weights, str(tmp_path / "one"), "-o", out]) == 2
    assert "generator weights not found: " + missing_weights in capsys.readouterr().err
    assert not os.path.exists(out)


def test_unreadable_image_is_reported_and_the_rest_written(tmp_path, generator_file, capsys):
    rng = np.random.default_rng(2)
    folder = tmp_path / "in"
    folder.mkdir()
    _image(rng).save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    assert predict.main(["--weights", str(generator_file), str(folder), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg: not a readable image" in err and "1 of 2 images" in err
    assert "Traceback" not in err
    assert sorted(os.listdir(out)) == ["good.png"]


def test_without_weights_the_built_in_model_derains_and_says_so(tmp_path, capsys):
    from tf_deraindrop.weights import default_model_card

    image = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "rainy.png")
    assert predict.main([str(tmp_path / "rainy.png"), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    card = default_model_card()
    assert "Model: the built-in lite student, trained on synthetic raindrops only" in out
    assert f"{card['real_pair']['psnr']:.2f} dB" in out and "--weights gen.pkl" in out
    with Image.open(tmp_path / "out" / "rainy.png") as derained:
        assert derained.size == (64, 48)


def test_without_weights_and_no_built_in_model_it_asks_for_weights(tmp_path, capsys, monkeypatch):
    import tf_deraindrop.weights as weights

    monkeypatch.setattr(weights, "default_weights", lambda: None)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    assert predict.main([str(tmp_path / "in.png"), "-o", str(tmp_path / "out")]) == 2
    assert "--weights is required" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
