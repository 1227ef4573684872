"""Training that loses nothing: NaN roll-back, damaged checkpoints, one run per out-dir,
write errors, bad pairs in the validation split, corrupt pixel data."""

from __future__ import annotations

import glob
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import zlib

import pytest

from tests.helpers.train import (
    NANO_STUDENT,
    REPO,
    checkpoint_steps,
    env,
    make_pairs,
    small_run_flags,
    train_command,
)
from tf_deraindrop.cli import train as train_module
from tf_deraindrop.data import DatasetWarning
from tf_deraindrop.training.lock import RunLock


def _flags(data_dir, out_dir, **overrides) -> list[str]:
    return small_run_flags(data_dir, out_dir, **{"seed": 3, **NANO_STUDENT, **overrides})


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), count=4, size=40)


def test_after_a_spike_with_a_huge_learning_rate_a_resume_at_the_normal_rate_trains_on(
    pairs_dir, tmp_path, capsys
):
    out = str(tmp_path / "spike")
    assert train_module.main(_flags(pairs_dir, out, steps=4)) == 0
    # A learning rate of 1e4 blows the weights up within a step or two.
    assert train_module.main(_flags(pairs_dir, out, steps=10, **{"g-lr": 1e4, "d-lr": 1e4})) == 1
    err = capsys.readouterr().err
    assert "not finite" in err and "resumes from" in err
    health = json.load(open(os.path.join(out, "checkpoints", "health.json")))
    assert health["nan_stop"] is not None
    # The resume at the normal rate rolls back past the blow-up and finishes the run.
    assert train_module.main(_flags(pairs_dir, out, steps=10, **{"g-lr": 2e-4, "d-lr": 2e-4})) == 0
    err = capsys.readouterr().err
    assert "resuming from ckpt-" in err
    assert max(checkpoint_steps(out)) == 10
    assert os.listdir(os.path.join(out, "checkpoints", "rejected"))
    health = json.load(open(os.path.join(out, "checkpoints", "health.json")))
    assert health["nan_stop"] is None


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(pairs_dir, tmp_path, capsys):
    out = str(tmp_path / "damaged")
    assert train_module.main(_flags(pairs_dir, out, steps=4)) == 0
    assert checkpoint_steps(out) == [2, 3, 4]
    (data,) = glob.glob(os.path.join(out, "checkpoints", "ckpt-4.data-*"))
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    assert train_module.main(_flags(pairs_dir, out, steps=5)) == 0
    err = capsys.readouterr().err
    assert "ckpt-4 cannot be read" in err and "resuming from ckpt-3" in err
    # The damaged checkpoint is kept aside, not deleted, and the run went on from step 3.
    assert os.path.isfile(os.path.join(out, "checkpoints", "damaged", os.path.basename(data)))
    assert max(checkpoint_steps(out)) == 5
    # When no checkpoint reads at all: exit 2 with advice, nothing moved.
    for path in glob.glob(os.path.join(out, "checkpoints", "ckpt-*.data-*")):
        with open(path, "r+b") as f:
            f.truncate(16)
    assert train_module.main(_flags(pairs_dir, out, steps=6)) == 2
    err = capsys.readouterr().err
    assert "no checkpoint can be read" in err and "--out-dir" in err
    assert len(checkpoint_steps(out)) == 3


def test_a_second_run_on_the_same_out_dir_exits_2_naming_the_holder(pairs_dir, tmp_path, capsys):
    out = str(tmp_path / "locked")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tf_deraindrop.training.lock import RunLock; "
            f"RunLock({out!r}).acquire(); print('held', flush=True); time.sleep(120)",
        ],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert train_module.main(_flags(pairs_dir, out, steps=1)) == 2
        err = capsys.readouterr().err
        assert f"in use by process {holder.pid}" in err
        assert not os.path.isdir(os.path.join(out, "checkpoints"))
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing (kill -9): its lock is taken over with a warning.
    assert train_module.main(_flags(pairs_dir, out, steps=1)) == 0
    err = capsys.readouterr().err
    assert f"stale lock of {out} left by process {holder.pid}" in err
    # A clean exit leaves no holder named, so the next run starts without a warning.
    with RunLock(out):
        pass
    assert open(os.path.join(out, ".run.lock")).read() == ""


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_checkpoint_that_cannot_be_written_stops_the_run_with_exit_2_and_no_leftovers(
    pairs_dir, tmp_path
):
    # Files over 4 MB fail as on a full disk; the checkpoint (about 19 MB, mostly the
    # discriminator and its optimizer) is one.
    out = str(tmp_path / "full")
    result = subprocess.run(
        train_command(*_flags(pairs_dir, out, steps=3, **{"checkpoint-every": 1})),
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=_limit_file_size,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "could not write the checkpoint of step 1" in result.stderr
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    assert not glob.glob(os.path.join(out, "checkpoints", "*_temp*"))
    assert not os.path.isfile(os.path.join(out, "generator.keras"))


def test_skip_bad_with_the_only_validation_pair_bad_trains_without_validation(tmp_path):
    data_dir = make_pairs(tmp_path / "train", count=3, size=40)
    val_dir = make_pairs(tmp_path / "val", count=1, size=40)
    with open(os.path.join(val_dir, "gt", "0_clean.png"), "wb") as f:
        f.write(b"not a png")
    flags = _flags(data_dir, str(tmp_path / "o"), steps=1, **{"val-dir": val_dir})
    with pytest.warns(DatasetWarning) as caught:
        assert train_module.main([*flags, "--skip-bad"]) == 0
    said = [str(warning.message) for warning in caught]
    assert any("Skipped 1 of 1 pairs" in text and "0_clean.png" in text for text in said), said
    assert any("training without validation" in text for text in said), said
    # Held out of --data-dir instead: the bad pair is dropped before the split.
    with open(os.path.join(data_dir, "data", "1_rain.png"), "wb") as f:
        f.write(b"not a png")
    flags = _flags(data_dir, str(tmp_path / "o2"), steps=1, **{"val-fraction": 0.4})
    with pytest.warns(DatasetWarning, match="1_rain.png"):
        assert train_module.main([*flags, "--skip-bad"]) == 0


def _corrupt_pixel_data(path: str) -> None:
    """Replaces a PNG's compressed pixel data with noise, keeping every chunk's checksum valid."""
    blob = bytearray(open(path, "rb").read())
    at = blob.index(b"IDAT")
    length = struct.unpack(">I", blob[at - 4 : at])[0]
    noise = bytes((i * 37 + 11) % 256 for i in range(length))
    blob[at + 4 : at + 4 + length] = noise
    blob[at + 4 + length : at + 8 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + noise))
    open(path, "wb").write(bytes(blob))


def test_corrupt_pixel_data_with_valid_checksums_is_named(tmp_path, capsys):
    data_dir = make_pairs(tmp_path / "pairs", count=3, size=40)
    bad = os.path.join(data_dir, "data", "2_rain.png")
    _corrupt_pixel_data(bad)
    assert train_module.main(_flags(data_dir, str(tmp_path / "o"), steps=2)) == 2
    err = capsys.readouterr().err
    assert "2_rain.png" in err and "Traceback" not in err
