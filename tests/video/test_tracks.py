"""Subtitle, data and timecode tracks go through a derained video with their timing."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.video import (
    decode,
    hidden_files,
    same_audio,
)
from tf_deraindrop.cli import predict
from tf_deraindrop.video import (
    derain_video,
    probe,
)

CUE_MS = 125


def _add_tracks(source, path, subtitle: str, telemetry: bool = False) -> None:
    """Remuxes `source` into `path` with a subtitle track of GPS cues, one every `CUE_MS`.

    With `telemetry` (MP4): also a `bin_data` track, written as GoPro's GPMF
    (`gpmd`), with a packet every 0.25 s, and a timecode (`tmcd`) track.
    """
    import struct
    from fractions import Fraction

    import av

    rng = np.random.default_rng(0)
    options = {"write_tmcd": "1"} if telemetry else {}
    with av.open(str(source)) as src, av.open(str(path), "w", options=options) as out:
        copies = {s.index: out.add_stream_from_template(s) for s in src.streams}
        cues = out.add_mux_stream(subtitle, time_base=Fraction(1, 1000))
        side = [(cues, CUE_MS, i) for i in range(int(1000 * probe(source).duration) // CUE_MS)]
        if telemetry:
            copies[src.streams.video[0].index].metadata["timecode"] = "01:02:03:04"
            gpmf = out.add_data_stream("bin_data")
            gpmf.time_base = Fraction(1, 1000)
            side += [(gpmf, 250, i) for i in range(len(side) * CUE_MS // 250)]
        for stream, step, i in side:
            if stream is cues:
                text = f"GPS 52.52{i:02d}N 13.405E {40 + i} km/h".encode()
                payload = struct.pack(">H", len(text)) + text if subtitle == "mov_text" else text
            else:
                payload = rng.integers(0, 256, 24, dtype=np.uint8).tobytes()
            packet = av.Packet(payload)
            packet.stream, packet.time_base = stream, Fraction(1, 1000)
            packet.pts = packet.dts = i * step
            packet.duration = step
            out.mux(packet)
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = copies[packet.stream.index]
                out.mux(packet)


@pytest.fixture(scope="module")
def tracks(clips, tmp_path_factory) -> dict[str, str]:
    """The AAC clip with mov_text, GPMF and timecode tracks (MP4); the small one with SubRip."""
    folder = tmp_path_factory.mktemp("tracks")
    paths = {"mp4": folder / "gps.mp4", "mkv": folder / "subs.mkv"}
    _add_tracks(clips["aac"], paths["mp4"], "mov_text", telemetry=True)
    _add_tracks(clips["small"], paths["mkv"], "subrip")
    return {name: str(path) for name, path in paths.items()}


def _track(path, kind: str) -> list[tuple[bytes, float, float]]:
    """The packets of a video's first `kind` stream: bytes, time from its first frame, duration.

    Without the empty `mov_text` samples (2 bytes: a text of length 0, which
    shows nothing): FFmpeg's MP4 muxer writes some of its own, where a cue
    ends and before the first, as soon as a packet of any stream is later.
    """
    import av

    start = probe(path).start
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if s.type == kind)
        packets = [p for p in container.demux(stream) if p.size and p.pts is not None]
        tb = stream.time_base
        return [
            (bytes(p), round(float(p.pts * tb) - start, 4), float(p.duration * tb))
            for p in packets
            if bytes(p) != b"\x00\x00"
        ]


def _in_range(packets, start: float, end: float):
    return [(b, round(t - start, 4), d) for b, t, d in packets if start <= t < end]


def test_subtitle_and_data_tracks_are_copied_with_their_timing(tracks, identity, tmp_path):
    import av

    source = tracks["mp4"]
    with av.open(source) as container:
        kinds = [s.type for s in container.streams]
    assert kinds == ["video", "audio", "subtitle", "data", "data"]  # GPMF, then the timecode
    cues, gpmf = _track(source, "subtitle"), _track(source, "data")
    assert len(cues) == 8 and len(gpmf) == 4
    notes = []
    result = derain_video(source, tmp_path / "gps.mp4", identity, progress=False, log=notes.append)
    assert result.frames == 24
    assert _track(tmp_path / "gps.mp4", "subtitle") == cues
    assert _track(tmp_path / "gps.mp4", "data") == gpmf
    same_audio(tmp_path / "gps.mp4", source)
    with av.open(str(tmp_path / "gps.mp4")) as container:
        (data,) = container.streams.data  # its handler name (what it is) goes with it
        assert data.metadata["handler_name"] == "GoPro MET" and data.name == "bin_data"
    # The timecode track has no codec FFmpeg can write: named, with why.
    assert notes == [
        f"warning: {source}: not copied: #4 data (no codec, TimeCodeHandler): "
        "FFmpeg knows no codec for it, and the MP4 muxer refuses it"
    ]

    part = tmp_path / "part.mp4"
    derain_video(source, part, identity, start=0.25, duration=0.5, progress=False, log=notes.append)
    assert len(notes) == 2
    assert _track(part, "subtitle") == _in_range(cues, 0.25, 0.75)
    assert _track(part, "data") == _in_range(gpmf, 0.25, 0.75)
    assert len(_track(part, "subtitle")) == 4 and _track(part, "subtitle")[0][1] == 0.0


def test_tracks_a_container_cannot_hold_are_named(
    tracks, identity, generator_path, tmp_path, capsys
):
    import av

    notes = []
    out = tmp_path / "gps.mkv"
    derain_video(tracks["mp4"], out, identity, codec="ffv1", progress=False, log=notes.append)
    source = tracks["mp4"]
    assert notes[0] == (
        f"warning: {source}: not copied: #2 subtitle (mov_text): MKV does not take mov_text; "
        "an .mp4 output would carry it (predict: --codec libx264)"
    )
    assert notes[1] == (
        f"warning: {source}: not copied: #3 data (bin_data): MKV holds audio, video and "
        "subtitles only; an .mp4 output would carry it (predict: --codec libx264)"
    )
    assert "#4 data (no codec, TimeCodeHandler)" in notes[2] and len(notes) == 3
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
    same_audio(out, source)

    # SubRip goes into MKV as it is; the command line writes MP4, which takes none.
    cues = _track(tracks["mkv"], "subtitle")
    derain_video(tracks["mkv"], tmp_path / "subs.mkv", identity, progress=False)
    assert _track(tmp_path / "subs.mkv", "subtitle") == cues and len(cues) == 4
    argv = ["--weights", generator_path, tracks["mkv"], "-o", str(tmp_path / "out")]
    assert predict.main(argv + ["--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (
        f"warning: {tracks['mkv']}: not copied: #1 subtitle (srt): MP4 does not take srt; "
        "an .mkv output would carry it (predict: --codec libvpx-vp9 or ffv1)"
    ) in err
    with av.open(str(tmp_path / "out" / "subs.mp4")) as container:
        assert [s.type for s in container.streams] == ["video"]


def test_a_packet_the_muxer_refuses_drops_its_track_not_the_video(
    tracks, identity, tmp_path, monkeypatch
):
    from tf_deraindrop.video import stages

    shift = stages.shift_packet
    cues = []

    def shift_and_break(packet, seconds):
        # The second cue of the range goes back in time: the muxer refuses its dts.
        shift(packet, seconds)
        if packet.stream.type == "subtitle" and bytes(packet) != b"\x00\x00":
            cues.append(packet)
            if len(cues) == 2:
                packet.pts = packet.dts = round(0.1 / packet.time_base)

    monkeypatch.setattr(stages, "shift_packet", shift_and_break)
    notes = []
    out = tmp_path / "part.mp4"
    result = derain_video(
        tracks["mp4"], out, identity, start=0.25, duration=0.5, progress=False, log=notes.append
    )
    assert result.frames == 12 and len(decode(out)[0]) == 12
    assert notes[-1] == (
        f"warning: {out}: #2 subtitle (mov_text) not copied from 0.100 s of the output on: "
        "the muxer refused its packet there (Invalid argument)"
    )
    assert _track(out, "subtitle") == _in_range(_track(tracks["mp4"], "subtitle"), 0.25, 0.375)
    assert _track(out, "data") == _in_range(_track(tracks["mp4"], "data"), 0.25, 0.75)
    assert not hidden_files(tmp_path)
