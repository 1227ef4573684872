"""A video request checked once: the input probed, the range, the encoder, the output planned.

`plan_video` is the one place that probes a video and checks `--start`,
`--duration`, `--codec` and `--crf` against it; `deraindrop predict` plans
every video before loading the model, and `derain_video` runs a plan as it is
(or makes one when called with a path alone).

Example:
    >>> plan = plan_video("drive.mp4", codec="libx264", crf=20, start="0:05")  # doctest: +SKIP
    >>> plan.output.extension, plan.expected_frames  # doctest: +SKIP
    ('.mp4', 150)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tf_deraindrop.video.encoders import Encoder, choose_encoder
from tf_deraindrop.video.passthrough import OutputPlan, plan_output
from tf_deraindrop.video.probing import VideoError, VideoInfo, parse_time, probe

#: The CRF range the encoders with a CRF setting accept (libx264 stops at 51).
CRF_RANGE = (0, 63)


@dataclass(frozen=True)
class VideoPlan:
    """Everything a derained video needs decided before its first frame.

    Attributes:
        info: the probed input.
        encoder: the video encoder.
        crf: its quality setting, or None for the encoder's default.
        start, duration: the part to derain, in seconds (None: from the start, to the end).
        audio: whether audio streams are copied.
        output: what the output's container takes (extension, copied streams, notes).
    """

    info: VideoInfo
    encoder: Encoder
    crf: int | None
    start: float | None
    duration: float | None
    audio: bool
    output: OutputPlan

    @property
    def expected_frames(self) -> int | None:
        """Frames in the range, as far as the container says."""
        return self.info.expected_frames(self.start, self.duration)

    def for_output(self, path: str | os.PathLike) -> VideoPlan:
        """The same plan for an output whose extension picks another container."""
        extension = os.path.splitext(os.fspath(path))[1].lower()
        if not extension or extension == self.output.extension:
            return self
        output = plan_output(self.info, self.encoder, audio=self.audio, extension=extension)
        return VideoPlan(
            self.info, self.encoder, self.crf, self.start, self.duration, self.audio, output
        )


def check_range(info: VideoInfo, start: float | None, duration: float | None) -> None:
    """Refuses an empty range: `--duration 0`, or `--start` at or past the end.

    Raises:
        VideoError: naming the file and the flag.
    """
    if duration is not None and duration <= 0:
        raise VideoError(f"{info.path}: --duration must be more than 0 seconds", info.path)
    if start and info.duration is not None and start >= info.duration:
        raise VideoError(
            f"{info.path}: --start {start:g} s is at or past its end ({info.duration:.2f} s)",
            info.path,
        )


def check_encoding(codec: str | Encoder | None, crf: int | None) -> Encoder:
    """The encoder for `codec`, with `crf` checked against it.

    Raises:
        ValueError: an unknown encoder, a CRF it has not, or one out of range.
    """
    encoder = codec if isinstance(codec, Encoder) else choose_encoder(codec)
    if crf is not None:
        if encoder.crf is None:
            raise ValueError(f"--crf: {encoder.name} has no CRF setting")
        if not CRF_RANGE[0] <= crf <= CRF_RANGE[1]:
            raise ValueError(f"--crf {crf}: must be between {CRF_RANGE[0]} and {CRF_RANGE[1]}")
    return encoder


def plan_video(
    video: str | os.PathLike | VideoInfo,
    codec: str | Encoder | None = None,
    crf: int | None = None,
    start: float | str | None = None,
    duration: float | str | None = None,
    audio: bool = True,
    output: str | os.PathLike | None = None,
) -> VideoPlan:
    """Probes `video` (unless given its `VideoInfo`) and checks the request against it.

    Args:
        video: a video file, or its `VideoInfo` from `probe`.
        codec: the encoder's name (None: the default, libx264) or an `Encoder`.
        crf: the encoder's quality setting.
        start, duration: seconds, or `[HH:]MM:SS[.ms]` text.
        audio: copy the audio streams.
        output: the output file, whose extension picks the container (None:
            the encoder's usual one).

    Raises:
        VideoError: the input is not a usable video, or the range is empty.
        ValueError: a bad encoder, CRF or time.
    """
    info = video if isinstance(video, VideoInfo) else probe(os.fspath(video))
    start, duration = parse_time(start, "--start"), parse_time(duration, "--duration")
    check_range(info, start, duration)
    encoder = check_encoding(codec, crf)
    plan = VideoPlan(
        info, encoder, crf, start, duration, audio, plan_output(info, encoder, audio=audio)
    )
    return plan if output is None else plan.for_output(output)
