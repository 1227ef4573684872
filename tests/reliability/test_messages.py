"""Messages that say what is wrong: bad settings, files of the wrong kind, full disks, warnings,
progress bars that end at 100%."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.train import REPO, env, make_pairs
from tf_deraindrop.cli import distill as distill_cli
from tf_deraindrop.cli import train as train_cli


def _train_error(capsys, tmp_path, *flags: str) -> str:
    data = make_pairs(tmp_path / "pairs", count=2, size=40)
    args = ["--data-dir", data, "--out-dir", str(tmp_path / "out"), *flags]
    assert train_cli.main(args) == 2
    return capsys.readouterr().err


def test_an_infinite_crop_size_in_a_config_file_is_named(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("crop_size = inf\n")
    err = _train_error(capsys, tmp_path, "--config", str(config))
    assert "crop_size" in err and "Traceback" not in err


def test_a_config_file_that_is_not_utf8_is_named(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_bytes(b"crop_size = 64\n# caf\xe9\n")
    err = _train_error(capsys, tmp_path, "--config", str(config))
    assert str(config) in err and "not UTF-8" in err


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_out_of_range_is_refused_by_train_and_distill(tmp_path, capsys, seed):
    err = _train_error(capsys, tmp_path, "--seed", seed)
    assert "--seed" in err and "4294967295" in err
    out = tmp_path / "distilled"
    teacher = tmp_path / "g.keras"
    teacher.write_bytes(b"")
    argv = ["--teacher", str(teacher), "--data-dir", str(tmp_path / "pairs"), "--seed", seed]
    assert distill_cli.main([*argv, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "Traceback" not in err
    assert not os.path.exists(out / ".run.lock")


def test_a_nan_learning_rate_must_be_finite(tmp_path, capsys):
    err = _train_error(capsys, tmp_path, "--g-lr", "nan")
    assert "--g-lr: must be a finite number" in err and "negative" not in err


@pytest.fixture
def wrong_files(tmp_path):
    from PIL import Image

    png = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    lite = tmp_path / "model.tflite"
    lite.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return {"png": png, "tflite": lite}


@pytest.mark.parametrize("kind, said", [("png", "a PNG image"), ("tflite", "TensorFlow Lite")])
def test_a_file_of_the_wrong_kind_as_weights_is_named_without_unsafe_advice(
    wrong_files, kind, said
):
    from tf_deraindrop.inference.loading import WeightsError, load_generator_weights
    from tf_deraindrop.official.checkpoint import CheckpointError, read_state_dict

    with pytest.raises(WeightsError) as caught:
        load_generator_weights(wrong_files[kind])
    assert said in str(caught.value) and ".keras" in str(caught.value)
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(wrong_files[kind])
    assert said in str(caught.value) and "weights_only" not in str(caught.value)


def test_a_pickle_of_other_objects_is_refused_without_unsafe_advice(tmp_path):
    from tf_deraindrop.official.checkpoint import CheckpointError, read_state_dict

    path = tmp_path / "gen.pkl"
    path.write_bytes(pickle.dumps({"weights": io.StringIO("x")}))
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    said = str(caught.value)
    assert str(path) in said and "weights_only" not in said and "will likely succeed" not in said


def test_a_keras_file_that_is_not_a_zip_is_said_so(tmp_path):
    from tf_deraindrop.inference.loading import WeightsError, load_generator_weights

    path = tmp_path / "generator.keras"
    path.write_text("not a model")
    with pytest.raises(WeightsError, match="not a Keras zip file"):
        load_generator_weights(path)


def test_a_full_disk_while_writing_the_generator_names_the_file(tmp_path, monkeypatch):
    import keras

    from tf_deraindrop.models import Generator
    from tf_deraindrop.training.callbacks import export_generator

    def full(self, path, *args, **kwargs):
        raise OSError(28, "No space left on device")

    generator = Generator()
    generator.build((None, None, None, 3))
    monkeypatch.setattr(keras.Model, "save", full)
    path = tmp_path / "generator.keras"
    with pytest.raises(OSError) as caught:
        export_generator(generator, path)
    assert str(path) in str(caught.value) and "No space left" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_skip_bad_names_and_counts_a_pair_with_corrupt_pixel_data(tmp_path):
    from tests.reliability.test_training_reliability import _corrupt_pixel_data
    from tf_deraindrop.data import DatasetWarning, find_pairs
    from tf_deraindrop.training.config import TrainConfig
    from tf_deraindrop.training.inputs import _checked

    data = make_pairs(tmp_path / "pairs", count=3, size=40)
    pairs = find_pairs(data)
    _corrupt_pixel_data(os.path.join(data, "data", "2_rain.png"))
    config = TrainConfig(crop_size=32, skip_bad=True)
    with pytest.warns(DatasetWarning, match="2_rain.png"):
        good = _checked(pairs, config, "training")
    assert len(good) == 2


def test_cli_warnings_print_the_message_without_the_source_line():
    code = "import warnings, tf_deraindrop.cli; warnings.warn('mind the gap')"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env(), capture_output=True, text=True
    )
    # (TensorFlow's own start-up lines may come first.)
    assert result.stderr.endswith("\nwarning: mind the gap\n"), result.stderr[-500:]
    assert "UserWarning" not in result.stderr


def test_a_video_with_gaps_in_time_ends_its_bar_at_100_percent(tmp_path):
    import av

    from tests.helpers.video import identity_model, scene
    from tf_deraindrop.video.pipeline import derain_video

    path = tmp_path / "gaps.mkv"  # Matroska: no frame count in the header
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        for i, pts in enumerate([0, 1, 2, 3, 4, 5, 6, 10]):
            frame = av.VideoFrame.from_ndarray(scene(i, 32, 32), format="rgb24")
            frame.pts = pts
            out.mux(video.encode(frame))
        out.mux(video.encode())
    stderr = io.StringIO()
    sys_stderr, sys.stderr = sys.stderr, stderr
    try:
        derain_video(path, tmp_path / "out.mkv", identity_model(), progress=True, log=print)
    finally:
        sys.stderr = sys_stderr
    bars = stderr.getvalue().replace("\r", "\n").splitlines()
    last = [line for line in bars if "frame" in line][-1]
    assert "100%" in last and "8/8" in last, last


def test_predicting_videos_only_shows_no_image_bar(capsys):
    from tf_deraindrop.cli.derain_jobs import predict_files

    assert predict_files(object(), [], progress=True) == []
    assert "image" not in capsys.readouterr().err
