"""Videos in, derained videos out: timing, audio, sizes, both engines, and every bad input.

The clips are made here with PyAV (a panning street photo with rendered
raindrops, 96 x 128). The quality checks run a small random generator
(seeded, so its output is the same every run) and a TFLite export of it;
the plumbing checks (timestamps, audio, sizes, errors) run an identity
model with the Generator's call contract, which costs no time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.video import (
    VFR_STEPS_MS,
    audio_packets,
    decode,
    hidden_files,
    identity_model,
    make_video,
    psnr,
    same_audio,
)
from tf_deraindrop.cli import predict
from tf_deraindrop.utils.visualize import attention_heatmap
from tf_deraindrop.video import (
    FrameModel,
    OutputExistsError,
    VideoError,
    VideoWriteError,
    derain_video,
    frame_model,
    iter_frames,
    probe,
)
from tf_deraindrop.video import writer as video_writer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference(clips, generator):
    """The AAC clip's decoded frames, and `derain` of each with its attention map."""
    from tf_deraindrop.inference.keras import derain

    frames, _ = decode(clips["aac"])
    pairs = [derain(generator, frame, return_attention=True) for frame in frames]
    return frames, [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="module")
def lite_model(generator, tmp_path_factory) -> str:
    from tf_deraindrop.export import tflite

    path = tmp_path_factory.mktemp("lite") / "g.tflite"
    tflite.export_tflite(
        generator, str(path), 32, 48, verify_model=False, progress=False, log=lambda _: None
    )
    return str(path)


def test_cli_keeps_frames_timing_rotation_audio_and_quality(
    clips, generator_path, reference, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = ["--weights", generator_path, clips["aac"], "-o", str(out), "--no-progress"]
    assert predict.main(argv + ["--compare", "--save-attention", "--precision", "float32"]) == 0
    stdout = capsys.readouterr().out
    assert "24 frames" in stdout and "pipeline" in stdout and "model alone" in stdout
    assert sorted(os.listdir(out)) == ["drive.mp4", "drive_attention.mp4", "drive_compare.mp4"]

    source, ours = probe(clips["aac"]), probe(out / "drive.mp4")
    assert (ours.codec, ours.pix_fmt, ours.width, ours.height) == ("h264", "yuv420p", 128, 96)
    assert ours.rotation == source.rotation == 90
    assert ours.display_matrix == source.display_matrix
    assert abs(ours.duration - source.duration) < 1 / 24
    frames, times = decode(out / "drive.mp4")
    _, source_times = decode(clips["aac"])
    assert len(frames) == 24
    np.testing.assert_allclose(times, source_times, atol=1e-3)
    # Audio: the same packets, byte for byte, at the same times.
    same_audio(out / "drive.mp4", clips["aac"])

    rainy, expected, maps = reference
    quality = [psnr(a, b) for a, b in zip(frames, expected)]
    assert min(quality) >= 35, quality
    pairs, _ = decode(out / "drive_compare.mp4")
    assert pairs[0].shape == (96, 2 * 128 + 4, 3)
    assert min(psnr(p[:, :128], r) for p, r in zip(pairs, rainy)) >= 30
    assert min(psnr(p[:, -128:], e) for p, e in zip(pairs, expected)) >= 35
    heat, _ = decode(out / "drive_attention.mp4")
    assert len(heat) == 24
    assert min(psnr(h, attention_heatmap(m)) for h, m in zip(heat, maps)) >= 30


def test_lossless_codec_with_batches_equals_derain(clips, generator, reference, tmp_path):
    model = frame_model(generator, batch_size=5)
    assert model.per_pass(96, 128) == 5  # 24 frames: four passes of 5 and one of 4 (filled up)
    # A pass holds at most max_pixels; a frame above it goes alone (tiled by derain).
    assert frame_model(generator, batch_size=4, max_pixels=2 * 480 * 720).per_pass(480, 720) == 2
    assert frame_model(generator, batch_size=4).per_pass(1080, 1920) == 1
    result = derain_video(clips["aac"], tmp_path / "drive.mkv", model, codec="ffv1", progress=False)
    assert result.frames == 24 and not result.truncated
    assert 0 < result.model_seconds <= result.seconds
    frames, _ = decode(tmp_path / "drive.mkv")
    quality = [psnr(a, b) for a, b in zip(frames, reference[1])]
    assert len(frames) == 24 and min(quality) >= 50, quality
    same_audio(tmp_path / "drive.mkv", clips["aac"])


def test_tflite_cli_tiles_an_odd_size_and_pixel_format(clips, lite_model, tmp_path, capsys):
    from tf_deraindrop.inference.tflite import LiteDerainer

    # 37 x 53 gray frames: four 32 x 48 tiles of the exported model each.
    out = tmp_path / "out"
    argv = ["--weights", lite_model, "--threads", "1", clips["tiles"], "-o", str(out)]
    assert predict.main(argv + ["--codec", "ffv1", "--no-progress"]) == 0
    assert "4 frames" in capsys.readouterr().out
    frames, _ = decode(out / "tiles.mkv")
    source, _ = decode(clips["tiles"])
    derainer = LiteDerainer(lite_model, threads=1)
    assert len(frames) == 4 and frames[0].shape == (37, 53, 3)
    quality = [psnr(a, derainer.derain(b)) for a, b in zip(frames, source)]
    assert min(quality) >= 50, quality


def test_variable_frame_rate_keeps_every_timestamp(clips, identity, tmp_path):
    result = derain_video(clips["vfr"], tmp_path / "vfr.mp4", identity, progress=False)
    assert result.frames == 24
    _, times = decode(tmp_path / "vfr.mp4")
    expected = np.cumsum([0] + [VFR_STEPS_MS[i % 4] for i in range(23)]) / 1000
    np.testing.assert_allclose(times, expected, atol=1e-3)
    assert abs(probe(tmp_path / "vfr.mp4").duration - probe(clips["vfr"]).duration) < 0.03


def test_odd_size_is_kept_in_4_4_4(clips, identity, tmp_path):
    notes = []
    result = derain_video(
        clips["odd"], tmp_path / "odd.mp4", identity, progress=False, log=notes.append
    )
    assert result.frames == 8
    assert any("odd side" in note and "yuv444p" in note for note in notes)
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.pix_fmt) == (131, 97, "yuv444p")
    frames, _ = decode(tmp_path / "odd.mp4")
    source, _ = decode(clips["odd"])
    # The identity model: the frames come back at H.264's quality of the rainy scene.
    assert min(psnr(a, b) for a, b in zip(frames, source)) >= 30


def test_start_and_duration(clips, identity, tmp_path):
    out = tmp_path / "part.mp4"
    result = derain_video(clips["aac"], out, identity, start="0.25", duration=0.5, progress=False)
    assert result.frames == 12 and not result.truncated
    _, times = decode(out)
    np.testing.assert_allclose(times, np.arange(12) / 24, atol=1e-3)
    packets, times = audio_packets(clips["aac"])
    inside = (times >= 0.25) & (times < 0.75)
    ours, our_times = audio_packets(out)
    assert ours == [p for p, keep in zip(packets, inside) if keep]
    np.testing.assert_allclose(our_times, times[inside] - 0.25, atol=1e-4)


#: Cues of the subtitle tracks made here: back to back, 1/8 s each, as a
#: dashcam writes its GPS and speed text.
def test_truncated_video_is_finalised_with_a_warning(generator_path, tmp_path, capsys):
    whole = tmp_path / "whole.mp4"
    make_video(whole, frames=48, size=(32, 48), options={"movflags": "+faststart"})
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out"
    assert predict.main(["--weights", generator_path, str(cut), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    written = len(decode(out / "cut.mp4")[0])
    assert 0 < written < 48
    assert f"cut.mp4 ends early: {written} of 48 frames" in err
    assert probe(out / "cut.mp4").frames == written  # a finalised, indexed file
    assert not hidden_files(out)


def test_bad_inputs_exit_2_before_the_model_loads(clips, tmp_path, capsys):
    import av

    weights = str(tmp_path / "missing.keras")  # never reached: each input fails first
    out = str(tmp_path / "out")

    def run(*argv) -> str:
        assert predict.main(["--weights", weights, *argv, "-o", out]) == 2
        err = capsys.readouterr().err
        assert "missing.keras" not in err and "Traceback" not in err
        return err

    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert "notes.mp4: not a video FFmpeg can read" in run(str(text))
    whole = tmp_path / "nomoov.mp4"
    make_video(whole, frames=12, size=(32, 48))
    (tmp_path / "cut.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert "cut.mp4: not a video FFmpeg can read, or its header" in run(str(tmp_path / "cut.mp4"))

    sound = tmp_path / "sound.m4a"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        for start in range(0, 48000, 1024):
            chunk = av.AudioFrame.from_ndarray(
                np.zeros((1, 2048), np.float32), format="flt", layout="stereo"
            )
            chunk.sample_rate, chunk.pts = 48000, start
            container.mux(stream.encode(chunk))
        container.mux(stream.encode())
    assert "sound.m4a: audio only (aac)" in run(str(sound))

    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height = 48, 32
        container.start_encoding()
    assert "empty.mp4: no video frames" in run(str(empty))

    err = run(clips["small"], "--codec", "nope")
    assert "--codec nope" in err and "libx264" in err and "ffv1" in err
    assert "has no CRF" in run(clips["small"], "--codec", "ffv1", "--crf", "10")
    assert "--start 9 s is at or past its end" in run(clips["small"], "--start", "9")
    assert "--start '1:x'" in run(clips["small"], "--start", "1:x")
    small_dir = os.path.dirname(clips["small"])
    err = predict.main(["--weights", weights, clips["small"], "-o", small_dir])
    assert err == 2 and "would overwrite the input" in capsys.readouterr().err
    os.makedirs(out)
    Path(out, "small.mp4").write_bytes(b"an earlier result")
    assert "small.mp4 already exist; pass --overwrite" in run(clips["small"])
    assert Path(out, "small.mp4").read_bytes() == b"an earlier result"
    with pytest.raises(OutputExistsError, match="--overwrite"):
        derain_video(clips["small"], Path(out, "small.mp4"), identity_model(), progress=False)
    with pytest.raises(VideoError, match="no such file"):
        derain_video(tmp_path / "nope.mp4", tmp_path / "x.mp4", identity_model())


class _Interrupted(FrameModel):
    """Passes frames through, then raises KeyboardInterrupt (Ctrl-C) at the `after`-th call."""

    def __init__(self, after: int):
        self.calls, self.after = 0, after

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return list(images), None


def test_ctrl_c_leaves_no_file_and_no_thread(clips, tmp_path):
    out = tmp_path / "drive.mp4"
    with pytest.raises(KeyboardInterrupt):
        derain_video(clips["aac"], out, _Interrupted(after=6), compare=tmp_path / "c.mp4")
    assert os.listdir(tmp_path) == []  # neither the outputs nor their temporary files
    assert not [t for t in threading.enumerate() if t.name.startswith("video-")]


class _LimitedDisk:
    """A file that fails with ENOSPC past `room` bytes, as a full disk does."""

    def __init__(self, path: str, room: int):
        self.file, self.room = open(path, "wb"), room

    def write(self, data) -> int:
        import errno

        if self.file.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.file.write(data)

    def seek(self, offset, whence=0):
        return self.file.seek(offset, whence)

    def tell(self):
        return self.file.tell()

    def close(self):
        self.file.close()


def test_full_disk_is_reported_and_the_temporary_file_removed(
    clips, identity, generator_path, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(video_writer, "_open_output", lambda path: _LimitedDisk(path, 6000))
    with pytest.raises(VideoWriteError, match="the disk is full"):
        derain_video(clips["aac"], tmp_path / "drive.mp4", identity, progress=False)
    assert os.listdir(tmp_path) == []
    out = tmp_path / "out"
    argv = ["--weights", generator_path, clips["aac"], clips["small"], "-o", str(out)]
    assert predict.main(argv + ["--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "drive.mp4: the disk is full" in err and "unfinished file was removed" in err
    assert os.listdir(out) == []


def test_kill_9_leaves_no_file_under_the_final_name(clips, tmp_path):
    out = tmp_path / "drive.mp4"
    script = (
        "import sys, time\n"
        "from tf_deraindrop.video import FrameModel, derain_video\n"
        "class Slow(FrameModel):\n"
        "    def __call__(self, images):\n"
        "        time.sleep(0.2)\n"
        "        return list(images), None\n"
        f"derain_video({clips['aac']!r}, {str(out)!r}, Slow(), progress=False)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not hidden_files(tmp_path) and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # a few frames in
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    # The next run (predict) removes the dead writer's temporary file.
    from tf_deraindrop.utils.files import remove_stale_partials

    (temporary,) = hidden_files(tmp_path)
    assert temporary.startswith(".drive.partial") and temporary.endswith(".mp4")
    remove_stale_partials(tmp_path)
    assert os.listdir(tmp_path) == []


def test_iter_frames_samples_and_ranges(clips):
    every = list(iter_frames(clips["aac"], every=0.25))
    assert [round(f.time, 3) for f in every] == [0.0, 0.25, 0.5, 0.75]
    assert every[0].image.shape == (96, 128, 3) and every[0].image.dtype == np.uint8
    part = list(iter_frames(clips["aac"], start="0:00.5", duration=0.25))
    assert [f.index for f in part] == list(range(6))
    np.testing.assert_allclose([f.time for f in part], 0.5 + np.arange(6) / 24, atol=1e-3)
    whole, _ = decode(clips["aac"])
    np.testing.assert_array_equal(part[0].image, whole[12])
    with pytest.raises(ValueError, match="every"):
        next(iter_frames(clips["aac"], every=0))
