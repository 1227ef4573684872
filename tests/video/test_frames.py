"""`deraindrop frames`: frames of a video into a folder, sampled, ranged, refused."""

from __future__ import annotations

import os

import numpy as np

from tests.helpers.video import decode, make_video
from tf_deraindrop.cli import frames as frames_cli
from tf_deraindrop.utils.images import read_image, to_float_rgb


def test_every_frame_then_a_sample_then_refusals(tmp_path, capsys):
    video = tmp_path / "drive.mp4"
    make_video(video, frames=12, size=(32, 48))
    decoded, _ = decode(video)
    out = tmp_path / "frames"
    assert frames_cli.main([str(video), "--out-dir", str(out), "--quiet"]) == 0
    names = sorted(os.listdir(out))
    assert len(names) == 12 and names[0] == "drive_00000000ms.png"
    assert names[1] == "drive_00000042ms.png"  # 1/24 s
    for name, frame in zip(names, decoded):
        np.testing.assert_array_equal(read_image(out / name), to_float_rgb(frame))
    assert "wrote 12 frames" in capsys.readouterr().out

    # Existing frames of that video: refused, unless --overwrite.
    assert frames_cli.main([str(video), "--out-dir", str(out)]) == 2
    assert "already holds frames of" in capsys.readouterr().err
    sampled = tmp_path / "sampled"
    argv = [str(video), "--out-dir", str(sampled), "--every", "0.25", "--start", "0.1"]
    assert frames_cli.main(argv + ["--format", "jpg", "--quiet"]) == 0
    # From 0.1 s, the first frame at or after 0.1 and 0.35 s: 0.125 and 0.375 s.
    assert sorted(os.listdir(sampled)) == ["drive_00000125ms.jpg", "drive_00000375ms.jpg"]

    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert frames_cli.main([str(text), "--out-dir", str(tmp_path / "x")]) == 2
    assert "notes.mp4: not a video FFmpeg can read" in capsys.readouterr().err
    assert frames_cli.main([str(video), "--out-dir", str(tmp_path / "x"), "--every", "-1"]) == 2
    assert "--every -1" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


def test_truncated_video_writes_what_decodes(tmp_path, capsys):
    whole = tmp_path / "whole.mp4"
    make_video(whole, frames=24, size=(32, 48), options={"movflags": "+faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    out = tmp_path / "frames"
    assert frames_cli.main([str(cut), "--out-dir", str(out), "--quiet"]) == 1
    written = len(os.listdir(out))
    assert 0 < written < 24
    assert f"ends early (truncated or damaged): {written} frames written" in capsys.readouterr().err
