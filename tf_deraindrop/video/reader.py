"""Decoding a video with PyAV: its frames as RGB arrays, the packets of other streams untouched.

`demux` walks the file once, in file order, decoding the video frames of a
time range and passing the packets of that range of the streams asked for
(audio, subtitles, data) along as they are (for copying); `iter_frames` is
the simple loop over RGB frames. What the file is comes from
`tf_deraindrop.video.probing`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from tf_deraindrop.video.probing import (
    VideoInfo,
    frame_time,
    load_av,
    open_video,
    parse_time,
    probe,
    video_stream,
)

#: Seconds of slack when comparing a frame's time with a range boundary.
_EPS = 1e-6

#: Seconds past the end of a range after which a subtitle or data stream with
#: no packet there yet is given up: FFmpeg's muxers write a sparse stream's
#: packets at most this far behind the others (their `max_interleave_delta`).
SPARSE_WAIT = 10.0


@dataclass
class DecodeStatus:
    """How decoding went: frames out, damaged packets skipped, and the error that ended it."""

    frames: int = 0
    damaged: int = 0
    error: str | None = None
    last_time: float | None = None
    last_duration: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: position in the decoded range, from 0.
        image: uint8 RGB `(H, W, 3)`.
        time: seconds since the video's first frame.
        pts: timestamp in `time_base` units, on the file's clock (None if the
            file gives none).
        duration: the frame's duration in `time_base` units (0 if unknown).
        time_base: unit of `pts` and `duration`, in seconds.
    """

    index: int
    image: np.ndarray
    time: float
    pts: int | None
    duration: int
    time_base: Fraction


@dataclass(frozen=True)
class _Span:
    """A range `[begin, end)` on the file's clock, in seconds (`end` None: to the end)."""

    begin: float
    end: float | None

    def before(self, t: float) -> bool:
        return t < self.begin - _EPS

    def past(self, t: float) -> bool:
        return self.end is not None and t >= self.end - _EPS


def demux(
    info: VideoInfo,
    start: float | None = None,
    duration: float | None = None,
    copy: Collection[int] = (),
    status: DecodeStatus | None = None,
    threads: int = 0,
) -> Iterator[tuple[str, object, float]]:
    """The video's decoded frames and the packets of the streams `copy`, in file order.

    Yields `("video", av.VideoFrame, time)` for the frames in `[start, start +
    duration)` (`time`: seconds from the first frame) and `("packet",
    av.Packet, time)` for the packets in that range of the streams whose
    indexes are in `copy` (audio, subtitles, data), untouched.
    `threads` sets the decoder's threads (0: FFmpeg's frame threading, one
    thread a core). A packet that
    does not decode is skipped and counted; an error of the container (a
    file cut short) ends the iteration; both go into `status`.
    """
    status = status if status is not None else DecodeStatus()
    container = open_video(info.path)
    try:
        stream = video_stream(container)
        _set_threads(stream, threads)
        streams = [stream] + [container.streams[i] for i in copy]
        begin = info.start + (start or 0.0)
        span = _Span(begin, None if duration is None else begin + duration)
        if start:
            container.seek(max(0, int(begin / stream.time_base)), stream=stream, backward=True)
        yield from _interleave(container, streams, span, bool(start), info, status)
    finally:
        container.close()


def _set_threads(stream, threads: int) -> None:
    if threads:
        stream.thread_count = threads
    elif load_av().logging.get_level() is None:
        stream.thread_type = "AUTO"
    else:  # logging on: FFmpeg's decoding threads would need the GIL (see load_av)
        stream.thread_count = 1


def _interleave(container, streams, span: _Span, seeked: bool, info: VideoInfo, status):
    """`demux`'s loop: frames and copied packets of `span`, until each stream has passed its end.

    A stream is waited for until one of its packets is past the end; a
    subtitle or data stream, which may have none there (a cue a minute),
    only until the file is `SPARSE_WAIT` seconds past it.
    """
    stream = streams[0]
    video_done = False
    waiting = {s.index for s in streams[1:]}
    sparse = {s.index for s in streams[1:] if s.type != "audio"}
    previous = None
    for packet in _packets(container, streams, status):
        if video_done and waiting & sparse and _far_past(packet, span):
            waiting -= sparse
            if not waiting:
                break
        if packet.stream.index != stream.index:
            if packet.size == 0 or packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            if span.past(t):
                waiting.discard(packet.stream.index)
                if video_done and not waiting:
                    break
                continue
            if seeked and span.before(t):
                continue
            yield "packet", packet, t - info.start
            continue
        if video_done:
            continue
        for frame in _decode(packet, status):
            t = frame_time(frame, stream.time_base, previous, info.rate)
            previous = t
            if span.before(t):
                continue
            if span.past(t):
                video_done = True
                break
            status.frames += 1
            status.last_time = t
            status.last_duration = float((frame.duration or 0) * stream.time_base)
            yield "video", frame, t - info.start
        if video_done and not waiting:
            break


def _far_past(packet, span: _Span) -> bool:
    """Whether a packet is `SPARSE_WAIT` seconds or more past the end of `span`."""
    ticks = packet.dts if packet.dts is not None else packet.pts
    return ticks is not None and span.past(float(ticks * packet.time_base) - SPARSE_WAIT)


def _packets(container, streams, status: DecodeStatus):
    """The packets of `streams`; an error of the container ends them, noted in `status`."""
    av = load_av()
    packets = container.demux(streams)
    while True:
        try:
            yield next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as err:
            status.error = f"the file ends in damaged data ({err})"
            return


def _decode(packet, status: DecodeStatus) -> list:
    """The frames of a video packet; none, counted as damaged, when it does not decode."""
    try:
        return packet.decode()
    except load_av().error.FFmpegError:
        status.damaged += 1
        return []


def looks_truncated(
    info: VideoInfo, status: DecodeStatus, start: float | None, duration: float | None
) -> bool:
    """Whether decoding ended early: an error of the file, or fewer frames than promised.

    The promise is the header's frame count for a whole file, else the
    stream's duration (a range ending more than 1.5 frames early).
    """
    if status.error is not None:
        return True
    if start is None and duration is None and info.frames:
        return status.frames < info.frames
    if info.duration is None or not info.rate or status.last_time is None:
        return False
    end = info.duration if duration is None else min(info.duration, (start or 0.0) + duration)
    step = 1.0 / float(info.rate)
    reached = status.last_time + (status.last_duration or step)
    return reached < end - 1.5 * step


class RGBConverter:
    """Decoded frames to uint8 RGB arrays, with one cached FFmpeg scaler."""

    def __init__(self):
        self._reformatter = load_av().video.reformatter.VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        rgb = self._reformatter.reformat(frame, format="rgb24")
        return rgb.to_ndarray()


def iter_frames(
    path: str | os.PathLike,
    start: float | str | None = None,
    duration: float | str | None = None,
    every: float | None = None,
    status: DecodeStatus | None = None,
) -> Iterator[Frame]:
    """The frames of a video as uint8 RGB arrays, for a loop of your own.

    Args:
        path: the video file.
        start: seconds (or `"MM:SS"`) from the first frame to begin at.
        duration: seconds to read (None: to the end).
        every: keep one frame every `every` seconds (the first frame at or
            after each multiple of `every` from `start`); None keeps them all.
        status: a `DecodeStatus` to fill in (frames decoded, damaged packets,
            the error that ended a truncated file).

    Yields:
        `Frame`s in display order.

    Raises:
        VideoError: the file is not a video (see `probe`).

    Example:
        >>> for frame in iter_frames("drive.mp4", start="0:10", duration=5):  # doctest: +SKIP
        ...     clean = derain(generator, frame.image)
    """
    start, duration = parse_time(start, "start"), parse_time(duration, "duration")
    if every is not None and not every > 0:
        raise ValueError(f"every must be a positive number of seconds, got {every}")
    info = probe(path)
    convert = RGBConverter()
    begin = start or 0.0
    next_time = 0.0
    index = 0
    for _, frame, time in demux(info, start, duration, status=status):
        if every is not None:
            if time - begin < next_time - _EPS:
                continue
            while next_time <= time - begin + _EPS:
                next_time += every
        yield Frame(
            index=index,
            image=convert(frame),
            time=time,
            pts=frame.pts,
            duration=int(frame.duration or 0),
            time_base=info.time_base,
        )
        index += 1
