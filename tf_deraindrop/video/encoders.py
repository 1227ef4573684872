"""Video encoders: the ones offered by name, checking that one works here, its pixel format.

An `Encoder` says how an FFmpeg encoder is used (container, pixel format,
quality setting); `choose_encoder` turns `--codec NAME` into one, refusing
names this FFmpeg build lacks or cannot start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from tf_deraindrop.video.probing import load_av

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


def video_encoders() -> list[str]:
    """Names of every video encoder in this FFmpeg build, sorted."""
    av = load_av()
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
        formats = [f.name for f in (load_av().codec.Codec(name, "w").video_formats or ())]
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
    av = load_av()
    context = av.CodecContext.create(encoder.name, "w")
    context.width, context.height, context.pix_fmt = 64, 64, encoder.pix_fmt
    context.time_base = Fraction(1, 25)
    try:
        context.open()
    except (av.error.FFmpegError, ValueError) as err:
        return str(err).split("; last error log: ")[-1]
    return None


def _chroma_subsampled(pix_fmt: str) -> bool:
    fmt = load_av().VideoFormat(pix_fmt, 16, 16)
    return any(c.width < 16 or c.height < 16 for c in fmt.components)


def pixel_format(encoder: Encoder, width: int, height: int) -> tuple[str, str | None]:
    """The pixel format for frames of this size, and a note when it is not the usual one.

    4:2:0 needs even sides: an odd-sized video is encoded in 4:4:4 instead
    (`yuv444p`), which keeps every pixel; some hardware players need even
    sides, so the note says so.
    """
    av = load_av()
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
