"""Audio copied as it is: which container takes it, its streams in an output, its timestamps.

Audio is never re-encoded: its packets go from the input to the output
untouched. Not every container takes every codec, so `plan_output` picks
the output's container (MKV when the encoder's own would drop the audio)
and says what is left out.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from tf_deraindrop.video.encoders import CONTAINERS, Encoder
from tf_deraindrop.video.probing import VideoInfo, load_av, open_video


def audio_fits(container_format: str, info: VideoInfo) -> dict[int, bool]:
    """For each audio stream of the video: whether the container takes it as it is."""
    av = load_av()
    fits = {}
    source = open_video(info.path)
    try:
        for stream in source.streams.audio:
            try:
                with av.open(io.BytesIO(), "w", format=container_format) as probe:
                    probe.add_stream_from_template(stream)
                    probe.start_encoding()
                fits[stream.index] = True
            except (av.error.FFmpegError, ValueError, TypeError):
                fits[stream.index] = False
    finally:
        source.close()
    return fits


@dataclass
class OutputPlan:
    """What a derained video will be: extension, encoder, pixel format, audio kept."""

    encoder: Encoder
    extension: str
    audio: tuple[int, ...]
    notes: list[str] = field(default_factory=list)


def plan_output(info: VideoInfo, encoder: Encoder, audio: bool = True) -> OutputPlan:
    """The container for a video's output: the encoder's, or MKV when its audio needs it."""
    notes = []
    extension = encoder.extension
    kept: tuple[int, ...] = ()
    if audio and info.audio:
        fits = audio_fits(CONTAINERS[extension], info)
        if not all(fits.values()) and extension != ".mkv":
            mkv = audio_fits(CONTAINERS[".mkv"], info)
            if sum(mkv.values()) > sum(fits.values()):
                notes.append(
                    f"its audio ({', '.join(c for _, c in info.audio)}) does not fit in "
                    f"{extension[1:].upper()}: writing MKV"
                )
                extension, fits = ".mkv", mkv
        kept = tuple(i for i, ok in fits.items() if ok)
        dropped = [f"#{i} {c}" for i, c in info.audio if i not in kept]
        if dropped:
            notes.append(f"audio not copied (no container takes it): {', '.join(dropped)}")
    if info.others:
        notes.append(f"not copied: {', '.join(info.others)}")
    return OutputPlan(encoder, extension, kept, notes)


def add_audio_streams(container, info: VideoInfo, indexes: Sequence[int]) -> dict:
    """Output streams copying the input's audio streams `indexes`, by input index."""
    streams = {}
    source = open_video(info.path)
    try:
        for index in indexes:
            streams[index] = container.add_stream_from_template(source.streams[index])
    finally:
        source.close()
    return streams


def shift_packet(packet, seconds: float) -> None:
    """Moves an audio packet `seconds` earlier, as a range cut from the video is."""
    ticks = round(seconds / packet.time_base)
    packet.pts -= ticks
    if packet.dts is not None:
        packet.dts -= ticks
