"""Writing videos with PyAV: encoder choice, audio copied as is, a temporary name until done.

A video is written under a hidden temporary name in its folder
(`.drive.partial.mp4`) and renamed at the end, so that an interrupted run
(Ctrl-C, `kill -9`, a full disk) never leaves a half-written file under the
final name.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from tf_deraindrop.video.reader import VideoInfo, _av, open_video

#: Container format of each output extension.
CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}


@dataclass(frozen=True)
class Encoder:
    """How an encoder is used: its container, pixel format and quality option.

    Attributes:
        name: FFmpeg's encoder name.
        extension: the output's extension (container).
        pix_fmt: pixel format of the encoded frames.
        crf: default of `--crf` (None: the encoder has no such setting).
        options: further encoder options.
        lossless: the pixels come back exactly (RGB in, RGB out).
    """

    name: str
    extension: str
    pix_fmt: str
    crf: int | None
    options: dict = field(default_factory=dict)
    lossless: bool = False


#: The encoders offered by name, best first. Others that FFmpeg has are
#: accepted too (in MKV, with their first pixel format).
ENCODERS = {
    e.name: e
    for e in (
        Encoder("libx264", ".mp4", "yuv420p", 18, {"preset": "medium"}),
        Encoder("libx265", ".mp4", "yuv420p", 22, {"x265-params": "log-level=error"}),
        Encoder("libvpx-vp9", ".mkv", "yuv420p", 30, {"b": "0", "row-mt": "1"}),
        Encoder("libsvtav1", ".mp4", "yuv420p", 32),
        Encoder("ffv1", ".mkv", "bgr0", None, {"level": "3"}, lossless=True),
        Encoder("mpeg4", ".mp4", "yuv420p", None, {"qscale": "3"}),
    )
}

DEFAULT_ENCODER = "libx264"


class VideoWriteError(OSError):
    """The output could not be written (full disk, no permission); the message names it."""


class OutputExistsError(FileExistsError):
    """The output exists (pass `overwrite=True`) or would replace an input."""


def video_encoders() -> list[str]:
    """Names of every video encoder in this FFmpeg build, sorted."""
    av = _av()
    names = []
    for name in sorted(av.codecs_available):
        try:
            codec = av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - a decoder-only name
            continue
        if codec.type == "video":
            names.append(name)
    return names


def choose_encoder(name: str | None = None) -> Encoder:
    """The `Encoder` for `--codec name` (None: H.264).

    Raises:
        ValueError: FFmpeg here has no such video encoder; the message lists
            the ones it has.
    """
    name = name or DEFAULT_ENCODER
    available = video_encoders()
    if name not in available:
        offered = [n for n in ENCODERS if n in available]
        others = [n for n in available if n not in ENCODERS]
        raise ValueError(
            f"--codec {name}: no such video encoder in this FFmpeg. Available: "
            f"{', '.join(offered)}; other FFmpeg video encoders: {', '.join(others)}"
        )
    if name in ENCODERS:
        encoder = ENCODERS[name]
    else:
        formats = [f.name for f in (_av().codec.Codec(name, "w").video_formats or ())]
        pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
        encoder = Encoder(name, ".mkv", pix_fmt, None)
    # An encoder listed may still need a device (nvenc, qsv, v4l2m2m): try it.
    reason = None if name in ENCODERS else _open_error(encoder)
    if reason is not None:
        offered = [n for n in ENCODERS if n in available]
        raise ValueError(
            f"--codec {name}: this encoder does not start here ({reason}). "
            f"Available: {', '.join(offered)}"
        )
    return encoder


def _open_error(encoder: Encoder) -> str | None:
    """None if the encoder opens for a small frame (hardware ones need their device), else why."""
    av = _av()
    context = av.CodecContext.create(encoder.name, "w")
    context.width, context.height, context.pix_fmt = 64, 64, encoder.pix_fmt
    context.time_base = Fraction(1, 25)
    try:
        context.open()
    except (av.error.FFmpegError, ValueError) as err:
        return str(err).split("; last error log: ")[-1]
    return None


def _chroma_subsampled(pix_fmt: str) -> bool:
    fmt = _av().VideoFormat(pix_fmt, 16, 16)
    return any(c.width < 16 or c.height < 16 for c in fmt.components)


def pixel_format(encoder: Encoder, width: int, height: int) -> tuple[str, str | None]:
    """The pixel format for frames of this size, and a note when it is not the usual one.

    4:2:0 needs even sides: an odd-sized video is encoded in 4:4:4 instead
    (`yuv444p`), which keeps every pixel; some hardware players need even
    sides, so the note says so.
    """
    av = _av()
    pix_fmt = encoder.pix_fmt
    formats = [f.name for f in (av.codec.Codec(encoder.name, "w").video_formats or ())]
    if (width % 2 or height % 2) and _chroma_subsampled(pix_fmt):
        for candidate in ("yuv444p", "gbrp", "bgr0", "rgb24"):
            if candidate in formats:
                return candidate, (
                    f"{width} x {height} has an odd side, which 4:2:0 cannot code: "
                    f"encoded as {candidate} (some hardware players need even sides)"
                )
        raise ValueError(
            f"{width} x {height} has an odd side and {encoder.name} codes only 4:2:0; "
            "choose --codec libx264 or ffv1"
        )
    return pix_fmt, None


def audio_fits(container_format: str, info: VideoInfo) -> dict[int, bool]:
    """For each audio stream of the video: whether the container takes it as it is."""
    av = _av()
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


def temporary_name(path: str) -> str:
    """`dir/.name.partial<pid>.ext`: hidden, in the output's folder, so the rename is atomic.

    The name is `tf_deraindrop.weights.atomic_path`'s, so that
    `weights.remove_stale_partials` removes it once its writer is dead (`kill -9`).
    """
    directory, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return os.path.join(directory, f".{stem}.partial{os.getpid()}{ext}")


def _open_output(path: str):
    """What FFmpeg writes to: the path (a seam for tests that simulate a full disk)."""
    return path


def describe_os_error(path: str, err: BaseException) -> str:
    """A message for a failed write that says what happened, e.g. that the disk is full."""
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"{path}: the disk is full (no space left on device)"
    if code == errno.EFBIG:
        return f"{path}: the file grew past the largest this system allows"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: no permission to write here ({os.strerror(code)})"
    return f"{path}: cannot write ({err})"


class VideoWriter:
    """Encodes uint8 RGB frames into a video, copying audio packets as they are.

    Args:
        path: the final file; written as `temporary_name(path)` until `close`.
        width, height: frame size.
        time_base: unit of the frames' `pts` and `duration`, in seconds.
        rate: the nominal frame rate (a hint for the encoder's rate control;
            the timestamps decide when frames show).
        encoder: an `Encoder` (default: H.264).
        crf: quality (lower is better; the encoder's default when None).
        audio_from: `(VideoInfo, stream indexes)` whose audio streams are copied.
        display_matrix: the input's display matrix (rotation), kept as it is.
        color: `(colorspace, range, primaries, trc)` FFmpeg tags to convert to
            and write, those of the input (unspecified: FFmpeg's defaults).
        overwrite: replace an existing file.
        threads: encoder threads (0: FFmpeg decides).

    Raises:
        OutputExistsError: `path` exists and `overwrite` is False.

    Example:
        >>> with VideoWriter("out.mp4", 128, 96, Fraction(1, 30), 30) as writer:  # doctest: +SKIP
        ...     writer.write(frame, pts=0, duration=1)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction | float | None,
        encoder: Encoder | None = None,
        crf: int | None = None,
        audio_from: tuple[VideoInfo, Sequence[int]] | None = None,
        display_matrix: Sequence[int] | None = None,
        color: tuple[int, int, int, int] | None = None,
        overwrite: bool = False,
        threads: int = 0,
        pix_fmt: str | None = None,
    ):
        av = _av()
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings unless told not to
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise OutputExistsError(f"{self.path} exists; pass --overwrite to replace it")
        self.encoder = encoder or choose_encoder(None)
        self.pix_fmt = pix_fmt or pixel_format(self.encoder, width, height)[0]
        self.time_base = Fraction(time_base)
        self.temporary = temporary_name(self.path)
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        fmt = CONTAINERS.get(os.path.splitext(self.path)[1].lower(), None)
        self._container = None
        self._last_pts = None
        self.frames = 0
        self.closed = False
        try:
            self._container = av.open(_open_output(self.temporary), "w", format=fmt)
            options = {k: str(v) for k, v in self.encoder.options.items()}
            crf = self.encoder.crf if crf is None else crf
            if crf is not None:
                options["crf"] = str(crf)
            stream = self._container.add_stream(
                self.encoder.name, rate=Fraction(rate) if rate else None, options=options
            )
            stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
            stream.codec_context.time_base = self.time_base
            stream.time_base = self.time_base
            stream.codec_context.thread_count = threads
            if self.encoder.name == "libx265" and fmt in ("mp4", "mov"):
                stream.codec_context.codec_tag = "hvc1"  # what Apple's players look for
            self._color = color
            if color is not None:
                context = stream.codec_context
                (context.colorspace, context.color_range) = color[0], color[1]
                (context.color_primaries, context.color_trc) = color[2], color[3]
            if display_matrix is not None:
                stream.set_display_matrix(list(display_matrix))
            self.video = stream
            self.audio = {}
            if audio_from is not None and audio_from[1]:
                info, indexes = audio_from
                source = open_video(info.path)
                try:
                    for index in indexes:
                        template = source.streams[index]
                        self.audio[index] = self._container.add_stream_from_template(template)
                finally:
                    source.close()
            self._reformatter = av.video.reformatter.VideoReformatter()
            self._container.start_encoding()
        except BaseException as err:
            self.abort()
            if isinstance(err, OSError) and not isinstance(err, av.error.FFmpegError):
                raise VideoWriteError(describe_os_error(self.path, err)) from err
            if isinstance(err, av.error.OSError):
                raise VideoWriteError(describe_os_error(self.path, err)) from err
            raise

    def _mux(self, packets) -> None:
        try:
            self._container.mux(packets)
        except OSError as err:
            raise VideoWriteError(describe_os_error(self.path, err)) from err

    def write(self, image: np.ndarray, pts: int, duration: int = 0) -> None:
        """Encodes one uint8 RGB frame `(H, W, 3)` shown at `pts` (in `time_base` units)."""
        av = _av()
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders refuse timestamps that do not increase
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if self._color is not None:
            frame = self._reformatter.reformat(
                frame,
                format=self.pix_fmt,
                dst_colorspace=self._color[0] if self._color[0] != 2 else None,
                dst_color_range=self._color[1] or None,
            )
        else:
            frame = self._reformatter.reformat(frame, format=self.pix_fmt)
        frame.pts = int(pts)
        frame.time_base = self.time_base
        if duration:
            frame.duration = int(duration)
        self._mux(self.video.encode(frame))
        self.frames += 1

    def copy(self, packet, index: int) -> None:
        """Muxes a packet of the input's audio stream `index` as it is (others are ignored)."""
        stream = self.audio.get(index)
        if stream is None:
            return
        packet.stream = stream
        self._mux(packet)

    def close(self) -> str:
        """Flushes the encoder, finalises the file and gives it its final name."""
        if self.closed:
            return self.path
        try:
            self._mux(self.video.encode(None))
            try:
                self._container.close()
            except OSError as err:
                raise VideoWriteError(describe_os_error(self.path, err)) from err
            self._container = None
            os.replace(self.temporary, self.path)
        except BaseException:
            self.abort()
            raise
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Stops writing and removes the temporary file (nothing under the final name)."""
        self.closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the file is removed anyway
                pass
            self._container = None
        try:
            os.remove(self.temporary)
        except FileNotFoundError:
            pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
