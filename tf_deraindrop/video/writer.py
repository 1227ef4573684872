"""Writing a video with PyAV: frames encoded, other streams copied, a temporary name until done.

A video is written under a hidden temporary name in its folder
(`.drive.partial.mp4`) and renamed at the end, so that an interrupted run
(Ctrl-C, `kill -9`, a full disk) never leaves a half-written file under the
final name. The encoder comes from `tf_deraindrop.video.encoders`, the
copied audio, subtitle and data streams from `tf_deraindrop.video.passthrough`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from tf_deraindrop.video.encoders import CONTAINERS, Encoder, choose_encoder, pixel_format
from tf_deraindrop.video.passthrough import add_copied_streams, describe
from tf_deraindrop.video.probing import VideoInfo, load_av


class VideoWriteError(OSError):
    """The output could not be written (full disk, no permission); the message names it."""


class OutputExistsError(FileExistsError):
    """The output exists (pass `overwrite=True`) or would replace an input."""


def temporary_name(path: str) -> str:
    """`dir/.name.partial<pid>.ext`: hidden, in the output's folder, so the rename is atomic.

    The name is `tf_deraindrop.utils.files.atomic_path`'s, so that
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
    """Encodes uint8 RGB frames into a video, copying other streams' packets as they are.

    Args:
        path: the final file; written as `temporary_name(path)` until `close`.
        width, height: frame size.
        time_base: unit of the frames' `pts` and `duration`, in seconds.
        rate: the nominal frame rate (a hint for the encoder's rate control;
            the timestamps decide when frames show).
        encoder: an `Encoder` (default: H.264).
        crf: quality (lower is better; the encoder's default when None).
        copy_from: `(VideoInfo, stream indexes)`: the input's audio, subtitle
            and data streams copied (`passthrough.plan_output` says which
            the container takes).
        display_matrix: the input's display matrix (rotation), kept as it is.
        color: `(colorspace, range, primaries, trc)` FFmpeg tags to convert to
            and write, those of the input (unspecified: FFmpeg's defaults).
        overwrite: replace an existing file.
        threads: encoder threads (0: FFmpeg decides).
        pix_fmt: the encoded pixel format (None: `pixel_format`'s choice for
            this encoder and size).

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
        copy_from: tuple[VideoInfo, Sequence[int]] | None = None,
        display_matrix: Sequence[int] | None = None,
        color: tuple[int, int, int, int] | None = None,
        overwrite: bool = False,
        threads: int = 0,
        pix_fmt: str | None = None,
    ):
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings unless told not to
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise OutputExistsError(f"{self.path} exists; pass --overwrite to replace it")
        self.encoder = encoder or choose_encoder(None)
        self.pix_fmt = pix_fmt or pixel_format(self.encoder, width, height)[0]
        self.time_base = Fraction(time_base)
        self.temporary = temporary_name(self.path)
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as err:
            raise VideoWriteError(describe_os_error(self.path, err)) from err
        self._container = None
        self._last_pts = None
        self._color = color
        self.frames = 0
        self.closed = False
        self.copied: dict = {}
        #: Streams whose copy stopped mid-way, with why (`copy`).
        self.dropped: list[str] = []
        self._open(width, height, rate, crf, copy_from, display_matrix, threads)

    def _open(self, width, height, rate, crf, copy_from, display_matrix, threads) -> None:
        """Opens the temporary file with its streams; on any error, nothing is left behind."""
        av = load_av()
        fmt = CONTAINERS.get(os.path.splitext(self.path)[1].lower(), None)
        try:
            self._container = av.open(_open_output(self.temporary), "w", format=fmt)
            self.video = self._add_video(fmt, width, height, rate, crf, threads)
            if display_matrix is not None:
                self.video.set_display_matrix(list(display_matrix))
            if copy_from is not None and copy_from[1]:
                self.copied = add_copied_streams(self._container, *copy_from)
            self._reformatter = av.video.reformatter.VideoReformatter()
            self._container.start_encoding()
        except BaseException as err:
            self.abort()
            if isinstance(err, OSError) and not isinstance(err, av.error.FFmpegError):
                raise VideoWriteError(describe_os_error(self.path, err)) from err
            if isinstance(err, av.error.OSError):
                raise VideoWriteError(describe_os_error(self.path, err)) from err
            raise

    def _add_video(self, fmt, width: int, height: int, rate, crf, threads: int):
        """The encoded video stream: encoder options, size, timing and colour tags."""
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
        if self._color is not None:
            context, color = stream.codec_context, self._color
            (context.colorspace, context.color_range) = color[0], color[1]
            (context.color_primaries, context.color_trc) = color[2], color[3]
        return stream

    def _mux(self, packets) -> None:
        try:
            self._container.mux(packets)
        except OSError as err:
            raise VideoWriteError(describe_os_error(self.path, err)) from err

    def write(self, image: np.ndarray, pts: int, duration: int = 0) -> None:
        """Encodes one uint8 RGB frame `(H, W, 3)` shown at `pts` (in `time_base` units)."""
        av = load_av()
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
        """Muxes a packet of the input's stream `index` as it is (streams not copied are ignored).

        A packet the muxer refuses (FFmpeg's error, not the disk's) ends the
        copy of its stream, noted in `dropped`: the video is worth more than
        a subtitle or data track, and the muxer goes on after refusing one.
        """
        stream = self.copied.get(index)
        if stream is None:
            return
        av = load_av()
        when = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
        packet.stream = stream
        try:
            self._mux(packet)
        except av.error.FFmpegError as err:
            del self.copied[index]
            self.dropped.append(
                f"{describe(stream, index)} not copied from {when:.3f} s of the output on: "
                f"the muxer refused its packet there ({err.strerror or err})"
            )

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
        except OSError:  # not there (a read-only folder, say): nothing to remove
            pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
