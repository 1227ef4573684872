"""What a video file is: opening it with PyAV (FFmpeg) and describing its container and streams.

A file is recognised as a video by what FFmpeg finds in it (its container
and streams), not by its extension: `probe` decodes the first frame and
refuses still images, audio-only files and streams that do not decode.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
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


def load_av():
    """The `av` module, imported on first use."""
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


def video_stream(container):
    """The main video stream: the first that is not an attached picture (cover art)."""
    av = load_av()
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def frame_time(frame, time_base: Fraction, previous: float | None, rate) -> float:
    """A frame's time in seconds; estimated from the previous frame when it has no pts."""
    if frame.pts is not None:
        return float(frame.pts * time_base)
    step = 1.0 / float(rate) if rate else 0.0
    return 0.0 if previous is None else previous + step


def open_video(path: str):
    """`av.open` with errors as `VideoError` naming the file."""
    av = load_av()
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
    path = os.fspath(path)
    container = open_video(path)
    try:
        stream = _decodable_stream(container, path)
        first = _first_frame(container, stream, path)
        return _describe(container, stream, first, path)
    finally:
        container.close()


def is_video(path: str | os.PathLike) -> bool:
    """True when FFmpeg finds a decodable video stream in the file (not a still image)."""
    try:
        probe(path)
    except VideoError:
        return False
    return True


def _decodable_stream(container, path: str):
    """The video stream, or a `VideoError` saying what the file holds instead."""
    fmt = container.format.name
    stream = video_stream(container)
    if fmt.split(",")[0] in _IMAGE_DEMUXERS or fmt.endswith("_pipe"):
        raise VideoError(f"{path}: a still image ({fmt}), not a video", path, is_image=True)
    if stream is None:
        if container.streams.audio:
            codec = container.streams.audio[0].codec_context.name
            raise VideoError(f"{path}: audio only ({codec}), no video stream", path)
        kind = container.format.long_name or fmt
        raise VideoError(f"{path}: no video frames (no video stream in this {kind} file)", path)
    if stream.codec_context is None:
        raise VideoError(f"{path}: no decoder for its video codec in this FFmpeg", path)
    return stream


def _first_frame(container, stream, path: str):
    """The stream's first decoded frame, checked to convert to RGB."""
    av = load_av()
    first = None
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                first = frame
                break
            if first is not None:
                break
    except av.error.FFmpegError as err:
        message = f"{path}: its video ({stream.codec_context.name}) does not decode: {err}"
        raise VideoError(message, path) from err
    if first is None:
        raise VideoError(f"{path}: no video frames (its video stream is empty)", path)
    try:
        first.reformat(format="rgb24")
    except (av.error.FFmpegError, ValueError) as err:
        raise VideoError(
            f"{path}: pixel format {first.format.name} does not convert to RGB ({err})", path
        ) from err
    return first


def _duration(container, stream, time_base: Fraction, begin: float) -> float | None:
    """Seconds of video from its first frame, from the stream's header or the container's."""
    if stream.duration:
        duration = float(stream.duration * time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    else:
        return None
    if stream.start_time is not None:
        # The stream's duration counts from its own start.
        duration = max(0.0, duration + float(stream.start_time * time_base) - begin)
    return duration


def _display_matrix(frame) -> tuple[int, ...] | None:
    for side in frame.side_data:
        if side.type.name == "DISPLAYMATRIX":
            values = np.frombuffer(bytes(side), dtype=np.int32)
            if values.size == 9:
                return tuple(int(v) for v in values)
    return None


def _describe(container, stream, first, path: str) -> VideoInfo:
    """The `VideoInfo` of a file whose video stream decoded to `first`."""
    tb = stream.time_base or Fraction(1, 1000)
    rate = stream.average_rate or stream.guessed_rate or None
    begin = frame_time(first, tb, None, rate)
    others = tuple(
        f"#{s.index} {s.type} ({s.codec_context.name if s.codec_context else 'unknown'})"
        for s in container.streams
        if s.type not in ("audio",) and s is not stream
    )
    return VideoInfo(
        path=path,
        container=container.format.name,
        codec=stream.codec_context.name,
        width=first.width,
        height=first.height,
        pix_fmt=first.format.name,
        time_base=tb,
        rate=Fraction(rate) if rate else None,
        frames=int(stream.frames) or None,
        start=begin,
        duration=_duration(container, stream, tb, begin),
        display_matrix=_display_matrix(first),
        rotation=int(first.rotation),
        audio=tuple((s.index, s.codec_context.name) for s in container.streams.audio),
        others=others,
        colorspace=int(first.colorspace),
        color_range=int(first.color_range),
        color_primaries=int(first.color_primaries),
        color_trc=int(first.color_trc),
    )
