"""Reading videos with PyAV (FFmpeg): probing a file, decoding its frames to RGB.

A file is recognised as a video by what FFmpeg finds in it (its container
and streams), not by its extension. Frames come out as uint8 RGB arrays with
their timestamps; the audio packets can come along untouched, for copying.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

#: Extensions of video files, for listing a folder (a file is still probed:
#: its content decides, and other files of a folder are probed too).
VIDEO_SUFFIXES = (
    ".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm", ".ts", ".mts", ".m2ts",
    ".3gp", ".mpg", ".mpeg", ".wmv", ".flv",
)  # fmt: skip

#: Containers FFmpeg opens that hold a still image, not a video.
_IMAGE_DEMUXERS = ("image2", "image2pipe", "tty", "apng")

#: Seconds of slack when comparing a frame's time with a range boundary.
_EPS = 1e-6


class VideoError(ValueError):
    """A file that is not a usable video; the message names the file and says why.

    Attributes:
        path: the file.
        is_image: FFmpeg recognised the file as a still image.
    """

    def __init__(self, message: str, path: str = "", is_image: bool = False):
        super().__init__(message)
        self.path = path
        self.is_image = is_image


def _av():
    # PyAV loads FFmpeg's libraries (tens of MB): only when a video is met.
    # PyAV's default keeps FFmpeg's log quiet without the GIL. A log level
    # (av.logging.set_level) takes the GIL in FFmpeg's decoding threads and
    # can deadlock a decoder running in one thread while another waits.
    import av

    return av


def parse_time(text: str | float | int | None, flag: str = "time") -> float | None:
    """Seconds from `"90"`, `"1:30"`, `"00:01:30.5"` or a number; None stays None.

    Raises:
        ValueError: not a time, or negative; the message names `flag`.

    Example:
        >>> parse_time("1:02.5")
        62.5
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        try:
            parts = [float(p) for p in str(text).strip().split(":")]
        except ValueError:
            parts = []
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"{flag} {text!r}: expected seconds or [HH:]MM:SS[.ms]")
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + part
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{flag} {text!r}: must be a time of zero or more")
    return seconds


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` found in a video file.

    Attributes:
        path: the file.
        container: FFmpeg's name of the container format.
        codec: the video codec.
        width, height: the stored frame size (before any display rotation).
        pix_fmt: the decoded pixel format.
        time_base: unit of the video timestamps, in seconds.
        rate: average frame rate (None if unknown).
        frames: frame count from the header (None if the header has none).
        start: time of the first frame on the file's clock, in seconds.
        duration: length of the video stream in seconds (None if unknown).
        display_matrix: the 3 x 3 display matrix (rotation, flips) of the
            stream, 9 int32 values, or None.
        rotation: the display rotation in degrees, counter-clockwise.
        audio: `(stream index, codec name)` of each audio stream.
        others: descriptions of the streams that are neither (subtitles, data).
        colorspace, color_range, color_primaries, color_trc: FFmpeg's colour
            tags of the first frame.
    """

    path: str
    container: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    rate: Fraction | None
    frames: int | None
    start: float
    duration: float | None
    display_matrix: tuple[int, ...] | None = None
    rotation: int = 0
    audio: tuple[tuple[int, str], ...] = ()
    others: tuple[str, ...] = ()
    colorspace: int = 2
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2

    def expected_frames(self, start: float | None = None, duration: float | None = None):
        """Frames expected in `[start, start + duration)` (whole file: the header's count).

        None when neither the count nor the rate and duration are known.
        """
        if start is None and duration is None and self.frames:
            return self.frames
        if self.rate is None or self.duration is None:
            return None
        begin = start or 0.0
        end = self.duration if duration is None else min(self.duration, begin + duration)
        return max(0, round((end - begin) * float(self.rate)))


def _video_stream(container):
    """The main video stream: the first that is not an attached picture (cover art)."""
    av = _av()
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _display_matrix(frame) -> tuple[int, ...] | None:
    for side in frame.side_data:
        if side.type.name == "DISPLAYMATRIX":
            values = np.frombuffer(bytes(side), dtype=np.int32)
            if values.size == 9:
                return tuple(int(v) for v in values)
    return None


def _frame_time(frame, time_base: Fraction, previous: float | None, rate) -> float:
    """A frame's time in seconds; estimated from the previous frame when it has no pts."""
    if frame.pts is not None:
        return float(frame.pts * time_base)
    step = 1.0 / float(rate) if rate else 0.0
    return 0.0 if previous is None else previous + step


def open_video(path: str):
    """`av.open` with errors as `VideoError` naming the file."""
    av = _av()
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file", path)
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a folder, not a video", path)
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise VideoError(
            f"{path}: not a video FFmpeg can read, or its header is damaged or missing "
            f"(a recording cut off before it was finalised has no index): {reason}",
            path,
        ) from err


def probe(path: str | os.PathLike) -> VideoInfo:
    """Opens a video, decodes its first frame, and describes it.

    Raises:
        VideoError: no such file, not a container FFmpeg reads, a still image
            (`is_image`), audio only, no decoder for the codec, no frame that
            decodes, or a pixel format that does not convert to RGB.

    Example:
        >>> info = probe("drive.mp4")  # doctest: +SKIP
        >>> info.width, info.height, info.rate, info.frames  # doctest: +SKIP
        (1280, 720, Fraction(30, 1), 5400)
    """
    av = _av()
    path = os.fspath(path)
    container = open_video(path)
    try:
        fmt = container.format.name
        stream = _video_stream(container)
        if fmt.split(",")[0] in _IMAGE_DEMUXERS or fmt.endswith("_pipe"):
            raise VideoError(f"{path}: a still image ({fmt}), not a video", path, is_image=True)
        if stream is None:
            if container.streams.audio:
                codec = container.streams.audio[0].codec_context.name
                raise VideoError(f"{path}: audio only ({codec}), no video stream", path)
            kind = container.format.long_name or fmt
            raise VideoError(f"{path}: no video frames (no video stream in this {kind} file)", path)
        context = stream.codec_context
        if context is None:
            raise VideoError(f"{path}: no decoder for its video codec in this FFmpeg", path)
        first = None
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    first = frame
                    break
                if first is not None:
                    break
        except av.error.FFmpegError as err:
            message = f"{path}: its video ({context.name}) does not decode: {err}"
            raise VideoError(message, path) from err
        if first is None:
            raise VideoError(f"{path}: no video frames (its video stream is empty)", path)
        try:
            first.reformat(format="rgb24")
        except (av.error.FFmpegError, ValueError) as err:
            raise VideoError(
                f"{path}: pixel format {first.format.name} does not convert to RGB ({err})", path
            ) from err
        tb = stream.time_base or Fraction(1, 1000)
        rate = stream.average_rate or stream.guessed_rate or None
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = None
        begin = _frame_time(first, tb, None, rate)
        if duration is not None and stream.start_time is not None:
            # The stream's duration counts from its own start.
            duration = max(0.0, duration + float(stream.start_time * tb) - begin)
        audio = tuple((s.index, s.codec_context.name) for s in container.streams.audio)
        others = tuple(
            f"#{s.index} {s.type} ({s.codec_context.name if s.codec_context else 'unknown'})"
            for s in container.streams
            if s.type not in ("audio",) and s is not stream
        )
        return VideoInfo(
            path=path,
            container=fmt,
            codec=context.name,
            width=first.width,
            height=first.height,
            pix_fmt=first.format.name,
            time_base=tb,
            rate=Fraction(rate) if rate else None,
            frames=int(stream.frames) or None,
            start=begin,
            duration=duration,
            display_matrix=_display_matrix(first),
            rotation=int(first.rotation),
            audio=audio,
            others=others,
            colorspace=int(first.colorspace),
            color_range=int(first.color_range),
            color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc),
        )
    finally:
        container.close()


def is_video(path: str | os.PathLike) -> bool:
    """True when FFmpeg finds a decodable video stream in the file (not a still image)."""
    try:
        probe(path)
    except VideoError:
        return False
    return True


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


def demux(
    info: VideoInfo,
    start: float | None = None,
    duration: float | None = None,
    audio: bool = True,
    status: DecodeStatus | None = None,
    threads: int = 0,
) -> Iterator[tuple[str, object, float]]:
    """The video's decoded frames and its audio packets, in file order.

    Yields `("video", av.VideoFrame, time)` for the frames in `[start, start +
    duration)` (`time`: seconds from the first frame) and, with `audio`,
    `("audio", av.Packet, time)` for the audio packets in that range, untouched.
    `threads` sets the decoder's threads (0: FFmpeg's frame threading, one
    thread a core). A packet that
    does not decode is skipped and counted; an error of the container (a
    file cut short) ends the iteration; both go into `status`.
    """
    av = _av()
    status = status if status is not None else DecodeStatus()
    container = open_video(info.path)
    try:
        stream = _video_stream(container)
        if threads:
            stream.thread_count = threads
        elif av.logging.get_level() is None:
            stream.thread_type = "AUTO"
        else:  # logging on: FFmpeg's decoding threads would need the GIL (see _av)
            stream.thread_count = 1
        streams = [stream] + (list(container.streams.audio) if audio else [])
        begin = info.start + (start or 0.0)
        end = None if duration is None else begin + duration
        if start:
            container.seek(max(0, int(begin / stream.time_base)), stream=stream, backward=True)
        video_done = False
        audio_open = {s.index for s in streams[1:]}
        previous = None
        packets = container.demux(streams)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as err:
                status.error = f"the file ends in damaged data ({err})"
                break
            if packet.stream.index != stream.index:
                if packet.size == 0 or packet.pts is None:
                    continue
                t = float(packet.pts * packet.time_base)
                if end is not None and t >= end - _EPS:
                    audio_open.discard(packet.stream.index)
                    if video_done and not audio_open:
                        break
                    continue
                if start and t < begin - _EPS:
                    continue
                yield "audio", packet, t - info.start
                continue
            if video_done:
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                status.damaged += 1
                continue
            for frame in frames:
                t = _frame_time(frame, stream.time_base, previous, info.rate)
                previous = t
                if t < begin - _EPS:
                    continue
                if end is not None and t >= end - _EPS:
                    video_done = True
                    break
                status.frames += 1
                status.last_time = t
                status.last_duration = float((frame.duration or 0) * stream.time_base)
                yield "video", frame, t - info.start
            if video_done and not audio_open:
                break
    finally:
        container.close()


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
        self._reformatter = _av().video.reformatter.VideoReformatter()

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
    for _, frame, time in demux(info, start, duration, audio=False, status=status):
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
