"""Streams copied as they are: audio, subtitles and data tracks, and which container takes them.

Nothing but the video is re-encoded: the packets of the audio, subtitle and
data streams (a dashcam's GPS or speed as `mov_text` subtitles, GoPro's GPMF
telemetry as a `bin_data` track) go from the input to the output untouched,
moved earlier by the start of a `--start` range. Not every container takes
every codec: MP4 and MOV take `mov_text` and `bin_data`, MKV takes SubRip
and ASS subtitles but no data stream, and no container here takes a data
stream without a codec (a QuickTime timecode, `tmcd`). So `plan_output` first
writes each stream into the output's container in memory, and copies only
the ones that go in; the others are named in a warning, with the reason and
the container that would take them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from tf_deraindrop.video.encoders import CONTAINERS, Encoder
from tf_deraindrop.video.probing import VideoInfo, load_av, open_video, video_stream

#: The kinds of streams copied into the output.
COPIED_KINDS = ("audio", "subtitle", "data")

#: How warnings name a container format.
FORMAT_NAMES = {"mp4": "MP4", "mov": "MOV", "matroska": "MKV", "webm": "WebM"}

#: Where a stream the chosen container refuses could go instead, with how to ask
#: for it from the command line (the encoder picks the container there).
ELSEWHERE = {
    ".mkv": "an .mkv output would carry it (predict: --codec libvpx-vp9 or ffv1)",
    ".mp4": "an .mp4 output would carry it (predict: --codec libx264)",
}


def codec_name(stream) -> str:
    """The codec of a stream as FFmpeg names it; a data stream may have none."""
    if stream.codec_context is not None:
        return stream.codec_context.name
    name = getattr(stream, "name", None)
    handler = stream.metadata.get("handler_name")
    return name or (f"no codec, {handler}" if handler else "no codec")


def describe(stream, index: int | None = None) -> str:
    """`#2 subtitle (mov_text)`: a stream of the input, by its index there."""
    index = stream.index if index is None else index
    return f"#{index} {stream.type} ({codec_name(stream)})"


@dataclass(frozen=True)
class Trial:
    """A stream of the input written into a container in memory: whether it went in.

    Attributes:
        stream: `describe` of the input's stream.
        kind: `audio`, `subtitle` or `data`.
        why_not: why the container refuses it (None: it takes it as it is).
    """

    stream: str
    kind: str
    why_not: str | None


def _empty_packet(av, stream, time_base):
    packet = av.Packet(b"\x00\x00")  # an empty mov_text sample; any bytes for the others
    packet.stream = stream
    packet.pts = packet.dts = 0
    packet.duration = 1
    packet.time_base = time_base
    return packet


def _why_not(av, stream, container_format: str) -> str | None:
    """Why `container_format` cannot hold a copy of `stream` (None: it can), tried in memory."""
    name = FORMAT_NAMES.get(container_format, container_format.upper())
    try:
        with av.open(io.BytesIO(), "w", format=container_format) as trial:
            copy = trial.add_stream_from_template(stream)
            trial.start_encoding()
            if stream.type != "audio":
                # Some muxers check a track at its first sample or its end (MOV's
                # timecode track wants a frame rate), so one empty sample goes in.
                # Not audio: muxers parse some audio codecs' packets.
                trial.mux(_empty_packet(av, copy, stream.time_base))
    except av.error.FFmpegError as err:
        if stream.type == "data" and container_format in ("matroska", "webm"):
            return f"{name} holds audio, video and subtitles only"
        if stream.codec_context is None and not getattr(stream, "name", None):
            return f"FFmpeg knows no codec for it, and the {name} muxer refuses it"
        return f"the {name} muxer refuses it ({err.strerror or err})"
    except (ValueError, TypeError):  # PyAV's check: the format has no tag for the codec
        return f"{name} does not take {codec_name(stream)}"
    return None


def try_streams(
    container_format: str, info: VideoInfo, kinds: Sequence[str] = COPIED_KINDS
) -> dict[int, Trial]:
    """Each stream of the video of a kind in `kinds`, written into `container_format` in memory."""
    av = load_av()
    source = open_video(info.path)
    try:
        return {
            s.index: Trial(describe(s), s.type, _why_not(av, s, container_format))
            for s in source.streams
            if s.type in kinds
        }
    finally:
        source.close()


def never_copied(info: VideoInfo) -> list[str]:
    """The streams that are not copied whatever the container: attachments, other videos."""
    source = open_video(info.path)
    try:
        main = video_stream(source)
        return [
            describe(s)
            for s in source.streams
            if s.type not in COPIED_KINDS and (main is None or s.index != main.index)
        ]
    finally:
        source.close()


@dataclass
class OutputPlan:
    """What a derained video will be: extension, encoder, the streams copied into it.

    Attributes:
        encoder: the video encoder.
        extension: the output's extension (container).
        copied: input indexes of the audio, subtitle and data streams copied.
        notes: what the output changes (the container).
        warnings: what the output leaves out, and why.
    """

    encoder: Encoder
    extension: str
    copied: tuple[int, ...]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _count(trials: dict[int, Trial], kind: str) -> int:
    return sum(t.kind == kind and t.why_not is None for t in trials.values())


def plan_output(
    info: VideoInfo, encoder: Encoder, audio: bool = True, extension: str | None = None
) -> OutputPlan:
    """The container of a video's output and the streams copied into it.

    Args:
        info: the input video.
        encoder: the video encoder; its container is the output's, or MKV
            when the encoder's would drop audio that MKV takes.
        audio: copy the audio streams (subtitles and data are copied anyway).
        extension: the output's own extension (`derain_video`'s output
            name), kept as it is; None: chosen as above.
    """
    kinds = COPIED_KINDS if audio else COPIED_KINDS[1:]
    notes = []
    chosen = (extension or encoder.extension).lower()
    trials = try_streams(output_format(chosen), info, kinds)
    fits = _count(trials, "audio")
    if audio and extension is None and chosen != ".mkv" and fits < len(info.audio):
        mkv = try_streams(CONTAINERS[".mkv"], info, kinds)
        if _count(mkv, "audio") > fits:
            codecs = ", ".join(c for _, c in info.audio)
            notes.append(f"its audio ({codecs}) does not fit in {chosen[1:].upper()}: writing MKV")
            chosen, trials = ".mkv", mkv
    copied = tuple(i for i, t in trials.items() if t.why_not is None)
    refused = {i: t for i, t in trials.items() if t.why_not is not None}
    warnings = _refusals(info, chosen, refused, bool(notes)) if refused else []
    others = never_copied(info)
    if others:
        warnings.append(f"not copied (no stream of this kind is): {', '.join(others)}")
    return OutputPlan(encoder, chosen, copied, notes, warnings)


def _refusals(
    info: VideoInfo, chosen: str, refused: dict[int, Trial], for_audio: bool
) -> list[str]:
    """A warning for each refused stream: why, and another container that takes it, if any.

    `for_audio`: MKV was chosen for the audio, which the other container drops.
    """
    hints: dict[int, str] = {}
    kinds = tuple({t.kind for t in refused.values()})
    for other, hint in ELSEWHERE.items():
        if for_audio:
            hint = f"{other[1:].upper()} would carry it, but not the audio"
        if other != chosen:
            for index, trial in try_streams(CONTAINERS[other], info, kinds).items():
                if index in refused and trial.why_not is None:
                    hints.setdefault(index, f"; {hint}")
    return [f"not copied: {t.stream}: {t.why_not}{hints.get(i, '')}" for i, t in refused.items()]


def output_format(extension: str) -> str:
    """The container format FFmpeg writes for a file name ending in `extension`.

    Raises:
        ValueError: FFmpeg writes no format under that extension.
    """
    if extension.lower() in CONTAINERS:
        return CONTAINERS[extension.lower()]
    # FFmpeg guesses from the name; the file is only created when writing starts.
    try:
        with load_av().open(f"probe{extension}", "w") as probe:
            return probe.format.name
    except ValueError as err:
        raise ValueError(f"FFmpeg writes no format under the extension {extension!r}") from err


def add_copied_streams(container, info: VideoInfo, indexes: Sequence[int]) -> dict:
    """Output streams copying the input's streams `indexes` (codec, metadata, disposition)."""
    streams = {}
    source = open_video(info.path)
    try:
        for index in indexes:
            template = source.streams[index]
            stream = container.add_stream_from_template(template)
            # As FFmpeg's command line does: the language, title and flags
            # (default, forced) of a track go with it.
            stream.metadata.update(template.metadata)
            stream.disposition = template.disposition
            streams[index] = stream
    finally:
        source.close()
    return streams


def shift_packet(packet, seconds: float) -> None:
    """Moves a copied packet `seconds` earlier, as a range cut from the video is."""
    ticks = round(seconds / packet.time_base)
    packet.pts -= ticks
    if packet.dts is not None:
        packet.dts -= ticks
