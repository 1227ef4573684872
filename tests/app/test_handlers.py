"""The app's handlers without a browser: uploads checked, photos and videos derained."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from tf_deraindrop.app import handlers
from tf_deraindrop.app.handlers import (
    Cancelled,
    Derainers,
    Jobs,
    ModelError,
    UploadError,
    check_upload,
    derain_photo,
    derain_video_file,
    find_models,
)
from tf_deraindrop.cli import app as app_cli


@pytest.fixture(scope="module")
def derainers() -> Derainers:
    return Derainers()


@pytest.fixture(scope="module")
def derainer(derainers, tiny_model):
    derainer, _ = derainers.get(str(tiny_model), "float32", None)
    return derainer


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """12 frames of 48 x 64 with an AAC tone."""
    from tests.helpers.video import make_video

    path = tmp_path_factory.mktemp("videos") / "drive.mp4"
    make_video(path, frames=12, size=(48, 64), audio=True)
    return path


def test_photo_gives_a_derained_image_and_heat_map_of_its_size(photo, derainer, tmp_path):
    assert check_upload(photo, max_upload_mb=1) == "photo"
    result = derain_photo(photo, derainer, tmp_path / "out")
    assert result.rainy.shape == result.derained.shape == (60, 90, 3)
    assert result.derained.dtype == np.uint8
    assert result.heatmap.shape == (60, 90, 3) and result.heatmap.dtype == np.uint8
    assert os.path.basename(result.output) == "rainy_derained.png"
    assert os.path.basename(result.heatmap_file) == "rainy_attention.png"
    assert os.path.isfile(result.output) and os.path.isfile(result.heatmap_file)
    assert result.engine.startswith("Keras, float32")
    assert result.summary.startswith("90 x 60 photo derained in ")


def test_a_file_neither_photo_nor_video_is_refused_by_name(not_media):
    with pytest.raises(UploadError, match=r"notes\.jpg is neither a photo nor a video"):
        check_upload(not_media, max_upload_mb=1)


def test_a_file_too_large_is_refused_before_it_is_read(photo):
    with pytest.raises(UploadError, match=r"rainy\.jpg is 0\.0 MB; .* up to 0\.001 MB"):
        check_upload(photo, max_upload_mb=0.001)


def test_a_decompression_bomb_is_refused(photo, monkeypatch):
    from tf_deraindrop.utils import images

    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(UploadError, match=r"rainy\.jpg: .*more than the 100 pixels"):
        check_upload(photo, max_upload_mb=1)


def test_no_upload_is_refused():
    with pytest.raises(UploadError, match="no file was uploaded"):
        check_upload(None, max_upload_mb=1)


def test_video_is_derained_with_progress(video, derainer, tmp_path):
    assert check_upload(video, max_upload_mb=5) == "video"
    seen = []
    outcome = derain_video_file(video, derainer, tmp_path, on_progress=lambda *a: seen.append(a))
    assert os.path.basename(outcome.output) == "drive_derained.mp4"
    assert outcome.frames == 12
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)
    from tf_deraindrop.video import probe

    info = probe(outcome.output)
    assert (info.height, info.width) == (48, 64)
    import av

    with av.open(outcome.output) as container:
        assert len(container.streams.audio) == 1


def test_cancel_leaves_nothing_written(video, derainer, tmp_path):
    cancel = threading.Event()

    def progress(done, total):
        if done >= 3:
            cancel.set()  # as the Cancel button does, from another thread

    with pytest.raises(Cancelled):
        derain_video_file(video, derainer, tmp_path, cancel=cancel, on_progress=progress)
    assert os.listdir(tmp_path) == []


def test_jobs_cancel_only_the_sessions_current_job():
    jobs = Jobs()
    first = jobs.start("a")
    second = jobs.start("a")  # a new job of the same tab replaces the first
    other = jobs.start("b")
    assert jobs.cancel("a") and second.is_set() and not first.is_set() and not other.is_set()
    assert not jobs.cancel("a")  # already cancelled
    jobs.finish("a", second)
    assert not jobs.cancel("a")


def test_derainers_are_cached_by_path_precision_and_tflite_threads(tmp_path):
    calls = []

    def loader(path, precision, threads, **options):
        calls.append((path, precision, threads, options))
        return object()

    derainers = Derainers(loader, max_pixels=512 * 512)
    keras, tflite = str(tmp_path / "g.keras"), str(tmp_path / "g.tflite")
    first, seconds = derainers.get(keras, "auto", 4)
    assert seconds > 0
    assert derainers.get(keras, "auto", 2) == (first, 0.0)  # threads: .tflite only
    assert derainers.get(keras, "float32", None)[0] is not first
    derainers.get(tflite, "auto", 2)
    derainers.get(tflite, "auto", 3)
    derainers.get(tflite, "auto", 3)
    assert [c[1:3] for c in calls] == [("auto", None), ("float32", None), ("auto", 2), ("auto", 3)]
    # The tiling applies to Keras models; a .tflite has its own.
    assert calls[0][3] == {"max_pixels": 512 * 512} and calls[2][3] == {}


def test_a_model_that_does_not_load_is_named(tmp_path, derainers):
    with pytest.raises(ModelError, match=r"missing\.keras"):
        derainers.get(str(tmp_path / "missing.keras"), "auto", None)
    with pytest.raises(ModelError, match="bfloat16"):
        derainers.get(str(tmp_path / "model.tflite"), "bfloat16", None)
    with pytest.raises(ModelError, match="pass --weights"):
        derainers.get("", "auto", None)


def test_models_are_listed_from_weights_and_models_dir(tmp_path):
    for name in ("b.tflite", "a.keras", "gen.pkl", "g.weights.h5", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    weights = str(tmp_path / "first.keras")
    names = [os.path.basename(p) for p in find_models(weights, str(tmp_path))]
    assert names == ["first.keras", "a.keras", "b.tflite", "g.weights.h5", "gen.pkl"]


def test_the_built_in_model_is_offered_without_weights():
    from tf_deraindrop.weights import default_weights

    assert default_weights() is not None and default_weights().endswith("default_student.keras")
    assert find_models(None, None) == [default_weights()]


def test_no_model_is_a_clear_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(handlers, "default_weights", lambda: None)  # an install without one
    assert find_models(None, None) == []
    assert app_cli.main([]) == 2
    assert "pass --weights gen.pkl|model.keras|model.tflite" in capsys.readouterr().err
    assert app_cli.main(["--models-dir", str(tmp_path)]) == 2
    assert "holds none" in capsys.readouterr().err


def test_help_says_where_the_app_listens(capsys):
    with pytest.raises(SystemExit):
        app_cli.main(["--help"])
    text = capsys.readouterr().out
    assert "127.0.0.1" in text and "--port" in text and "--max-upload-mb" in text
