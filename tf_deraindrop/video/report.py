"""What a video run reports: its `VideoResult`, the progress bar, and the end-of-run warnings.

The numbers (frames, pipeline and model time) go into a `VideoResult`; what
a person should know (a file that ends early, damaged packets) goes to the
run's log as one warning line each.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from tf_deraindrop.video.probing import VideoInfo
from tf_deraindrop.video.reader import DecodeStatus, looks_truncated


@dataclass
class VideoResult:
    """What `derain_video` did.

    Attributes:
        input, output: the files; `extras` maps "compare"/"attention" to theirs.
        frames: frames written.
        expected: frames the header or the duration promised (None: unknown).
        seconds: wall time of the whole pipeline.
        model_seconds: time inside the model's calls.
        truncated: the video ended early or in damaged data; `frames` were
            written into a finalised file.
        damaged: packets that did not decode and were skipped.
        reason: why the video looks truncated (None when it does not).
        notes: what was changed or left out (pixel format, streams not copied).
    """

    input: str
    output: str
    frames: int = 0
    expected: int | None = None
    seconds: float = 0.0
    model_seconds: float = 0.0
    truncated: bool = False
    damaged: int = 0
    reason: str | None = None
    extras: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames per second of the whole pipeline."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        """Frames per second of the model alone."""
        return self.frames / self.model_seconds if self.model_seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: frames, time, pipeline and model fps."""
        extra = ""
        if self.model_fps:
            extra = f" ({self.seconds / self.model_seconds - 1:+.0%} over the model)"
        return (
            f"{self.output}: {self.frames} frames in {self.seconds:.1f} s, "
            f"pipeline {self.fps:.2f} fps, model alone {self.model_fps:.2f} fps{extra}"
        )


def progress_bar(total: int | None, input: str, progress: bool):
    """A tqdm bar on stderr counting frames written (disabled without `progress`)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=os.path.basename(input),
        unit="frame",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def grow_bar(bar) -> None:
    """Counts one more frame, raising the bar's total when the estimate was short."""
    if bar.total is not None and bar.n >= bar.total:
        bar.total = bar.n + 1
    bar.update(1)


def finish_bar(bar) -> None:
    """At the end of a video: the total is the frames written, so the bar ends at 100%.

    A total from the duration and the nominal rate overcounts a video with
    gaps in time (or one of variable rate).
    """
    if bar.total != bar.n:
        bar.total = bar.n
        bar.refresh()


def report_decoding(
    result: VideoResult,
    info: VideoInfo,
    status: DecodeStatus,
    start: float | None,
    duration: float | None,
    log: Callable[[str], None],
) -> None:
    """Records how decoding went in `result` and warns of a file cut short or damaged packets."""
    result.damaged = status.damaged
    result.truncated = looks_truncated(info, status, start, duration)
    if result.truncated:
        count = f"{result.frames} of {result.expected}" if result.expected else result.frames
        result.reason = status.error or "the file ends before its header says"
        log(
            f"warning: {result.input} ends early: {count} frames decoded ({result.reason}); "
            f"they were written to {result.output}"
        )
    if status.damaged:
        log(f"warning: {result.input}: {status.damaged} damaged packets skipped")
