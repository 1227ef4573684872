"""Fault injection: each command against an output it cannot write, run as a user would.

A read-only folder is a read-only tmpfs mounted for the test (root ignores
directory permissions); where mounting is not allowed, a path under a regular
file stands in (every write there fails too, with ENOTDIR). A full disk is a
limit on the size of the files the command writes (`RLIMIT_FSIZE`).
Each command must exit 2 naming the path, print no traceback and leave no
partial file.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.train import REPO, env, make_pairs
from tests.reliability.test_robustness import leftovers


def _mount_read_only(folder: Path) -> str | None:
    """Mounts a read-only tmpfs on `folder`; None, or why it could not."""
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
    except OSError as err:
        return str(err)
    return None if done.returncode == 0 else (done.stderr.strip() or f"status {done.returncode}")


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A folder nothing can be written in (a read-only mount, else a path under a file)."""
    root = tmp_path_factory.mktemp("faults")
    folder = root / "ro"
    folder.mkdir()
    why = _mount_read_only(folder)
    if why is None:
        yield folder
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        return
    blocker = root / "a_file"
    blocker.write_text("")
    yield blocker  # `blocker / "out"` cannot be created: ENOTDIR


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Tiny pairs, a photo, a video and a random generator."""
    from tests.helpers.video import make_video
    from tf_deraindrop.models import Generator

    root = tmp_path_factory.mktemp("inputs")
    pairs = make_pairs(root / "pairs", count=3, size=32)
    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(photos / "photo.png")
    make_video(root / "clip.mp4", frames=3, size=(32, 32))
    generator = Generator()
    generator.build((None, None, None, 3))
    generator.save(root / "g.keras")
    return {
        "pairs": pairs,
        "photo": str(photos / "photo.png"),
        "photos": str(photos),
        "video": str(root / "clip.mp4"),
        "weights": str(root / "g.keras"),
    }


def _run(args, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "tf_deraindrop", *map(str, args)],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit if file_size_limit is not None else None,
    )


def _refused(result: subprocess.CompletedProcess, path) -> None:
    said = result.stderr
    assert result.returncode == 2, said[-3000:]
    assert str(path) in said and "Traceback" not in said, said[-3000:]


@pytest.mark.parametrize("what", ["photo", "video"])
def test_predict_into_a_read_only_folder(read_only, inputs, what):
    out = read_only / "out"
    _refused(_run(["predict", inputs[what], "--weights", inputs["weights"], "-o", out]), out)


def test_train_into_a_read_only_folder(read_only, inputs):
    out = read_only / "run"
    flags = ["--data-dir", inputs["pairs"], "--out-dir", out, "--steps", 1, "--crop-size", 32]
    _refused(_run(["train", *flags, "--vgg-weights", "none"]), out)


def test_distill_into_a_read_only_folder(read_only, inputs):
    out = read_only / "student"
    flags = ["--teacher", inputs["weights"], "--data-dir", inputs["pairs"], "--out-dir", out]
    _refused(_run(["distill", *flags, "--steps", 1, "--crop-size", 32]), out)


def test_distill_on_a_full_disk_names_the_teacher_cache(inputs, tmp_path):
    out = tmp_path / "student"
    flags = ["--teacher", inputs["weights"], "--data-dir", inputs["pairs"], "--out-dir", out]
    result = _run(["distill", *flags, "--steps", 1, "--crop-size", 32], file_size_limit=4096)
    _refused(result, out / "teacher_cache")
    assert not leftovers(out)  # no partial file, and no lock file left by the failed run


def test_evaluate_into_a_read_only_folder(read_only, inputs):
    csv = read_only / "scores.csv"
    _refused(_run(["evaluate", "--data-dir", inputs["pairs"], "--input-only", "--csv", csv]), csv)


def test_export_into_a_read_only_folder(read_only, inputs):
    out = read_only / "lite.tflite"
    flags = ["--weights", inputs["weights"], "--height", 32, "--width", 32, "-o", out]
    _refused(_run(["export", *flags, "--no-verify"]), read_only)


def test_synthesize_into_a_read_only_folder(read_only, inputs):
    out = read_only / "synthetic"
    flags = ["--clean-dir", inputs["photos"], "--out-dir", out, "--quiet"]
    _refused(_run(["synthesize", *flags, "--pairs-per-image", 1]), out)


def test_synthesize_on_a_full_disk_leaves_no_orphan_mask(inputs, tmp_path):
    out = tmp_path / "synthetic"
    flags = ["--clean-dir", inputs["photos"], "--out-dir", out, "--quiet", "--pairs-per-image", 1]
    result = _run(["synthesize", *flags], file_size_limit=1024)
    _refused(result, out)
    written = [p.name for p in out.rglob("*") if p.is_file()]
    assert written == [], written


def test_prepare_into_a_read_only_folder(read_only, inputs):
    records = read_only / "records"
    flags = ["--data-dir", inputs["pairs"], "--min-size", 16, "--no-masks", "--tfrecords", records]
    _refused(_run(["prepare", *flags, "--contact-sheet", read_only.parent / "sheet.png"]), records)


def test_the_video_writer_in_a_read_only_folder_names_the_file(read_only):
    from fractions import Fraction

    from tf_deraindrop.video.writer import VideoWriteError, VideoWriter

    path = read_only / "clip.mp4"
    with pytest.raises(VideoWriteError, match=str(path)):
        VideoWriter(path, 32, 32, Fraction(1, 10), 10)
