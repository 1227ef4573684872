"""Hostile input and a hostile disk: rotated photos, decompression bombs, full filesystems."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tf_deraindrop.cli import prepare as prepare_cli
from tf_deraindrop.utils.images import (
    MAX_IMAGE_PIXELS,
    ImageReadError,
    open_image,
    read_image,
)

# Helpers ----------------------------------------------------------------------


def bomb_png(path, width: int = 20000, height: int = 10000) -> None:
    """A valid 1-bit PNG of `width x height` pixels in about 25 KB: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + (width + 7) // 8)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(row * height, 9)))
        f.write(chunk(b"IEND", b""))


def rotated_jpeg(path, upright: np.ndarray, orientation: int = 6) -> None:
    """Stores `upright` as a camera would: pixels turned, with an EXIF tag saying how."""
    # Orientation 6 means "rotate 90 degrees clockwise to view": the stored
    # pixels are the upright image turned counter-clockwise.
    stored = {6: np.rot90(upright, 1), 8: np.rot90(upright, -1), 3: np.rot90(upright, 2)}
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored[orientation])).save(
        path, quality=100, subsampling=0, exif=exif.tobytes()
    )


def blocks(height: int, width: int) -> np.ndarray:
    """An image of flat 8 x 8 blocks (JPEG keeps it almost exactly), no symmetry."""
    rng = np.random.default_rng(height * 1000 + width)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)


def run_tool(args, cwd=REPO, file_size_limit=None, timeout=300):
    """Runs `python -m <args>` (or `python -c ...`) in a subprocess, optionally under
    RLIMIT_FSIZE (SIGXFSZ ignored)."""

    def limit():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, *(args if args[0] == "-c" else ["-m", *args])],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        preexec_fn=limit if file_size_limit is not None else None,
    )


def leftovers(folder) -> list[str]:
    """Hidden or partial files left in a folder tree."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            if name.startswith(".") or "partial" in name:
                found.append(os.path.join(root, name))
    return found


class FullDisk:
    """A folder where writing fails: `folder`, and `limit` for `run_tool`.

    A 64 KB tmpfs mounted there and filled up by `fill()` where this process
    may mount one (root, a mount namespace that allows it); otherwise an
    ordinary folder and a limit on the size of any file the tool writes
    (`RLIMIT_FSIZE`, `limit` bytes), so that the test always runs.
    """

    def __init__(self, folder, limit):
        self.folder, self.limit, self.mounted = folder, limit, limit is None

    def fill(self) -> None:
        if not self.mounted:
            return
        with open(self.folder / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass


@pytest.fixture
def full_disk(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        reason = (mounted.stderr or mounted.stdout).strip() or f"status {mounted.returncode}"
    except OSError as err:  # no mount command
        mounted, reason = None, str(err)
    if mounted is None or mounted.returncode != 0:
        message = f"no tmpfs ({reason}): the write fails on a file-size limit instead"
        warnings.warn(message, stacklevel=2)
        yield FullDisk(folder, 64)
        return
    try:
        yield FullDisk(folder, None)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _real_leftovers(folder) -> list[str]:
    return [p for p in leftovers(folder) if not p.endswith("filler")]


# EXIF orientation ---------------------------------------------------------------


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_rotated_jpeg_is_read_upright(tmp_path, orientation):
    upright = blocks(48, 80)  # landscape once turned; stored portrait for 6 and 8
    path = tmp_path / "phone.jpg"
    rotated_jpeg(path, upright, orientation)
    with Image.open(path) as img:
        assert img.getexif()[0x0112] == orientation
    image = read_image(path)
    assert image.shape == (48, 80, 3)
    assert np.abs(image * 255 - upright).mean() < 3  # JPEG noise, not a turned image


def test_rotated_photo_is_evaluated_upright(tmp_path):
    from tf_deraindrop.cli.evaluate import evaluate_pairs
    from tf_deraindrop.data import find_pairs

    upright = blocks(40, 64)
    os.makedirs(tmp_path / "set" / "data")
    os.makedirs(tmp_path / "set" / "gt")
    rotated_jpeg(tmp_path / "set" / "data" / "0_rain.jpg", upright)
    Image.fromarray(upright).save(tmp_path / "set" / "gt" / "0_clean.png")
    # Upright, the rainy JPEG matches its PNG partner in size and pixels.
    (row,) = evaluate_pairs(find_pairs(tmp_path / "set"), progress=False)
    assert row["input_psnr"] > 35


# Decompression bombs ---------------------------------------------------------


def test_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    bomb_png(path)
    assert os.path.getsize(path) < 100_000
    assert 20000 * 10000 > MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError, match="bomb.png: 200,000,000 pixels, more than the"):
        read_image(path)
    # Over the limit but under PIL's own refusal: the size is in the message.
    mid = tmp_path / "mid.png"
    bomb_png(mid, 15000, 10000)
    with pytest.raises(ImageReadError, match="mid.png: 15000 x 10000 = 150,000,000 pixels"):
        read_image(mid)
    # Between PIL's own warning (89 MP) and the limit: opened, without a warning.
    big = tmp_path / "big.png"
    bomb_png(big, 10000, 9000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_image(big) as img:
            assert img.size == (10000, 9000)


def test_bomb_in_evaluate_is_exit_2_naming_the_file(tmp_path, capsys):
    from tf_deraindrop.cli import evaluate

    os.makedirs(tmp_path / "set" / "data")
    os.makedirs(tmp_path / "set" / "gt")
    bomb_png(tmp_path / "set" / "data" / "0_rain.png")
    Image.fromarray(blocks(16, 16)).save(tmp_path / "set" / "gt" / "0_clean.png")
    code = evaluate.main(["--input-only", "--data-dir", str(tmp_path / "set"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "0_rain.png" in err and "decompression bomb" in err and "Traceback" not in err


# Write errors -----------------------------------------------------------------


def _small_set(root, n=3):
    os.makedirs(root / "data")
    os.makedirs(root / "gt")
    for k in range(n):
        Image.fromarray(blocks(16, 24)).save(root / "data" / f"{k}_rain.png")
        Image.fromarray(blocks(16, 32)[:, :24]).save(root / "gt" / f"{k}_clean.png")


def test_evaluate_prints_its_table_then_names_the_csv_it_cannot_write(tmp_path, full_disk):
    folder, limit = full_disk.folder, full_disk.limit
    _small_set(tmp_path / "set")
    full_disk.fill()
    csv_path = folder / "results.csv"
    args = ["tf_deraindrop.evaluate", "--input-only", "--data-dir", str(tmp_path / "set")]
    proc = run_tool(args + ["--csv", str(csv_path), "--no-progress"], file_size_limit=limit)
    assert proc.returncode == 2, proc.stderr
    assert "rainy input" in proc.stdout and "over 3 pairs" in proc.stdout  # the table
    assert f"could not write --csv {csv_path}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not csv_path.exists() and not _real_leftovers(folder)


def test_write_image_names_the_file_and_leaves_nothing(full_disk):
    from tf_deraindrop.utils.images import ImageWriteError, write_image

    if not full_disk.mounted:
        pytest.skip("needs the tmpfs in this process; the predict test covers write_image")
    full_disk.fill()
    target = full_disk.folder / "x.png"
    with pytest.raises(ImageWriteError, match=r"x.png: could not be written \(No space left"):
        write_image(target, np.random.default_rng(0).random((64, 64, 3)))
    assert not target.exists() and not _real_leftovers(full_disk.folder)


def test_tf_pipeline_reads_turned_photos_upright_like_read_image(tmp_path):
    # The training pipeline decodes with TensorFlow, which ignores EXIF; a
    # turned file goes through PIL instead, next to a plain one that stays
    # native. Both come out as read_image reads them.
    from tf_deraindrop.data import make_dataset
    from tf_deraindrop.utils.images import to_uint8

    root = tmp_path / "set"
    os.makedirs(root / "data")
    os.makedirs(root / "gt")
    upright = blocks(48, 64)
    rotated_jpeg(root / "data" / "0_rain.jpg", upright)
    Image.fromarray(upright).save(root / "data" / "1_rain.jpg", quality=100, subsampling=0)
    for k in (0, 1):
        Image.fromarray(upright).save(root / "gt" / f"{k}_clean.png")
    ds = make_dataset(root, crop_size=None, batch_size=1, training=False)
    got = [np.asarray(rainy[0]) for rainy, _, _ in ds]
    for k, rainy in enumerate(got):
        expected = to_uint8(read_image(next((root / "data").glob(f"{k}_rain.jpg"))))
        assert rainy.shape == (48, 64, 3)
        np.testing.assert_array_equal(np.round(rainy * 255).astype(np.uint8), expected)


def _bomb_set(root):
    os.makedirs(root / "data")
    os.makedirs(root / "gt")
    bomb_png(root / "data" / "0_rain.png")
    Image.fromarray(blocks(16, 16)).save(root / "gt" / "0_clean.png")


def test_bomb_in_training_checks_prepare_and_export_names_the_file(tmp_path, capsys):
    from tf_deraindrop.data import DatasetError, check_pairs, find_pairs
    from tf_deraindrop.export.errors import ExportError
    from tf_deraindrop.export.samples import read_images

    _bomb_set(tmp_path / "set")
    bomb = str(tmp_path / "set" / "data" / "0_rain.png")
    # Training's up-front checks (train exits 2 with this message).
    with pytest.raises(DatasetError, match="0_rain.png: 200,000,000 pixels.*decompression bomb"):
        check_pairs(find_pairs(tmp_path / "set"))
    # prepare lists it as a problem of the named file (its status for bad files is 1).
    code = prepare_cli.main(["--data-dir", str(tmp_path / "set"), "--no-masks", "--quiet"])
    out = capsys.readouterr()
    assert code == 1 and "0_rain.png" in out.out and "decompression bomb" in out.out
    # Export's calibration images: skipped with a warning naming it, exit 2 if none is left.
    with pytest.raises(ExportError, match="none of the 1 calibration images"):
        read_images([bomb], "calibration")
    assert f"{bomb}: 200,000,000 pixels" in capsys.readouterr().err


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    from reference.torch_generator import save_random_checkpoint

    path = tmp_path_factory.mktemp("pkl") / "gen.pkl"
    save_random_checkpoint(path, seed=3)
    return path


def test_convert_official_names_the_file_it_cannot_write(full_disk, authors_checkpoint):
    folder, limit = full_disk.folder, full_disk.limit
    full_disk.fill()
    target = folder / "g.keras"
    proc = run_tool(
        ["tf_deraindrop.convert_official", str(authors_checkpoint), "-o", str(target)],
        file_size_limit=limit,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"could not write {target}" in proc.stderr and "Traceback" not in proc.stderr
    assert not target.exists() and not _real_leftovers(folder)


def test_prepare_tfrecords_names_the_file_it_cannot_write(tmp_path, full_disk):
    folder, limit = full_disk.folder, full_disk.limit
    full_disk.fill()
    _small_set(tmp_path / "set")
    args = ["tf_deraindrop.cli.prepare", "--data-dir", str(tmp_path / "set"), "--min-size", "8"]
    args += ["--no-masks", "--contact-pairs", "0", "--quiet", "--tfrecords", str(folder)]
    proc = run_tool(args, file_size_limit=limit)
    assert proc.returncode == 2, proc.stdout + proc.stderr[-2000:]
    assert str(folder) in proc.stderr and "Traceback" not in proc.stderr
    assert not _real_leftovers(folder) and not list(folder.glob("*.tfrecord"))


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_stale_partials_of_killed_runs_are_removed_live_ones_kept(tmp_path, capsys):
    from tf_deraindrop.cli import evaluate

    _small_set(tmp_path / "set")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".results.partial{_dead_pid()}.csv"  # kill -9 during a write
    live = out / f".other.partial{os.getpid()}.csv"  # a writer still at work
    other = out / ".notes.txt"
    for path in (stale, live, other):
        path.write_text("")
    args = ["--input-only", "--data-dir", str(tmp_path / "set"), "--no-progress"]
    assert evaluate.main(args + ["--csv", str(out / "results.csv")]) == 0
    assert not stale.exists() and live.exists() and other.exists()
    assert (out / "results.csv").is_file()


def test_bomb_in_predict_is_exit_2_before_the_model_loads(tmp_path, capsys):
    from tf_deraindrop.cli import predict

    bomb_png(tmp_path / "bomb.png")
    out = tmp_path / "out"
    # The weights do not exist: the bomb must be found first.
    argv = ["--weights", str(tmp_path / "none.keras"), str(tmp_path / "bomb.png"), "-o", str(out)]
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert "bomb.png: 200,000,000 pixels" in err and "Traceback" not in err


def test_predict_names_the_image_it_cannot_write_and_leaves_nothing(
    tmp_path, full_disk, generator_file
):
    folder, limit = full_disk.folder, full_disk.limit
    photos = tmp_path / "in"
    photos.mkdir()
    for name in ("a", "b"):
        Image.fromarray(blocks(24, 32)).save(photos / f"{name}.png")
    full_disk.fill()
    args = ["tf_deraindrop.predict", "--weights", str(generator_file), str(photos)]
    args += ["-o", str(folder), "--max-pixels", "0", "--precision", "float32", "--no-progress"]
    proc = run_tool(args, file_size_limit=limit)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{folder / 'a.png'}: could not be written" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not _real_leftovers(folder) and not list(folder.glob("*.png"))


def test_predict_max_pixels_flag_reaches_derain(tmp_path, generator_file, capsys, monkeypatch):
    from tf_deraindrop.cli import predict
    from tf_deraindrop.inference import keras as inference

    Image.fromarray(blocks(40, 48)).save(tmp_path / "p.png")
    with pytest.raises(SystemExit):
        predict.main(["--weights", "w", str(tmp_path / "p.png"), "-o", "o", "--max-pixels", "9"])
    assert "--max-pixels: must be 0" in capsys.readouterr().err
    seen = []
    original = inference.derain

    def derain(*args, **kwargs):
        seen.append(kwargs.get("max_pixels", "default"))
        return original(*args, **kwargs)

    monkeypatch.setattr(inference, "derain", derain)
    argv = ["--weights", str(generator_file), str(tmp_path / "p.png"), "--precision", "float32"]
    for flag, expected in ((["--max-pixels", "0"], None), (["--max-pixels", "300000"], 300000)):
        seen.clear()
        assert predict.main(argv + ["-o", str(tmp_path / str(expected))] + flag) == 0
        assert seen == [expected]
        assert (tmp_path / str(expected) / "p.png").is_file()


def test_export_names_the_file_it_cannot_write_and_leaves_no_savedmodel(
    tmp_path, full_disk, generator_file
):
    folder, limit = full_disk.folder, full_disk.limit
    # A SavedModel folder left by an export killed with -9: the next removes it.
    stale = folder / f".derain_export.partial{_dead_pid()}.k9x"
    stale.mkdir()
    (stale / "saved_model.pb").write_bytes(b"\0" * 100)
    full_disk.fill()
    target = folder / "m.tflite"
    args = [
        "tf_deraindrop.cli.export",
        "--weights",
        str(generator_file),
        "--height",
        "16",
        "--width",
        "16",
    ]
    proc = run_tool(args + ["--no-verify", "--quiet", "-o", str(target)], file_size_limit=limit)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{target}: could not be written" in proc.stderr and "Traceback" not in proc.stderr
    assert not target.exists() and not _real_leftovers(folder)
