"""Deraining a video file into another: checking the request, opening outputs, running it.

`derain_video` checks everything it can before the first frame (the input,
the range, the encoder, the outputs), opens the writers, then runs the
reader, model and writer threads of `tf_deraindrop.video.stages`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

from tf_deraindrop.video.encoders import pixel_format
from tf_deraindrop.video.frame_model import frame_model
from tf_deraindrop.video.passthrough import OutputPlan, output_format, try_streams
from tf_deraindrop.video.plan import VideoPlan, plan_video
from tf_deraindrop.video.probing import VideoInfo
from tf_deraindrop.video.reader import DecodeStatus
from tf_deraindrop.video.report import (
    VideoResult,
    finish_bar,
    progress_bar,
    report_decoding,
)
from tf_deraindrop.video.stages import COMPARE_GAP, Stages
from tf_deraindrop.video.writer import OutputExistsError, VideoWriter

#: Threads of the decoder and of each encoder (0: FFmpeg's choice, about one
#: a core). One each made no difference to the int8 pipeline at 480 x 720 on
#: 2 cores: it spends under 1% of its time outside the model's calls there
#: (`benchmarks/bench_video.py`).
IO_THREADS = 0


def check_outputs(inputs: Sequence[str], outputs: Sequence[str], overwrite: bool) -> None:
    """Refuses an output that is an input, and an existing one unless `overwrite`.

    Raises:
        OutputExistsError: naming the file.
    """
    sources = {os.path.realpath(p): p for p in inputs}
    for out in outputs:
        key = os.path.realpath(out)
        if key in sources:
            raise OutputExistsError(f"{out} would overwrite the input {sources[key]}")
        if os.path.exists(out) and not overwrite:
            raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")


def derain_video(
    input: str | os.PathLike,
    output: str | os.PathLike,
    model,
    *,
    codec: str | None = None,
    crf: int | None = None,
    compare: str | os.PathLike | None = None,
    attention: str | os.PathLike | None = None,
    start: float | str | None = None,
    duration: float | str | None = None,
    overwrite: bool = False,
    batch_size: int | None = None,
    progress: bool = True,
    audio: bool = True,
    log: Callable[[str], None] | None = None,
    io_threads: int = IO_THREADS,
    plan: VideoPlan | None = None,
    **derain_options,
) -> VideoResult:
    """Derains a video file into another, frame by frame, keeping its timing, audio and tracks.

    The output has the input's frames (in the range), timestamps (constant or
    variable frame rate), size, rotation metadata and colour tags; its audio,
    subtitle and data streams (a dashcam's GPS track) are copied packet by
    packet without re-encoding, in the same pass, where the output's
    container takes them (a warning names each one it does not, and why;
    `tf_deraindrop.video.passthrough`). It is written under a temporary name
    and renamed when finalised.

    Args:
        input: the video.
        output: the derained video; its extension picks the container
            (`.mp4`, `.mkv`, `.mov`, `.webm`).
        model: a Keras model with the Generator's call contract (a
            `Generator`), a `LiteDerainer`, or a `FrameModel`.
        codec: the encoder (default `libx264`; `ffv1` is lossless).
        crf: quality of `libx264`/`libx265`/`libvpx-vp9`/`libsvtav1` (lower is better).
        compare: also write rainy | derained side by side to this file.
        attention: also write the attention heat map (`tf_deraindrop.utils.visualize`
            palette) to this file.
        start, duration: seconds (or `"MM:SS"`) of the part to derain.
        overwrite: replace existing outputs.
        batch_size: frames per pass of a Keras model (`DEFAULT_BATCH`).
        progress: show a progress bar (frames, fps, time left) on stderr.
        audio: copy the audio streams (subtitle and data streams are copied anyway).
        log: where notes and warnings go (default: stderr).
        io_threads: threads of the decoder and of each encoder (0: FFmpeg's
            choice, one or more a core; see `IO_THREADS`).
        plan: the input already probed and checked (`plan_video`); then
            `codec`, `crf`, `start`, `duration` and `audio` come from it.
        **derain_options: passed to `tf_deraindrop.derain` for Keras models.

    Returns:
        A `VideoResult` (frames, times, truncation).

    Raises:
        VideoError: the input is not a usable video, or the range is empty.
        OutputExistsError: an output exists (without `overwrite`) or is the input.
        VideoWriteError: an output could not be written (full disk); its
            temporary file is removed.
        ValueError: a bad codec, CRF or range.

    Example:
        >>> from tf_deraindrop.inference.tflite import LiteDerainer  # doctest: +SKIP
        >>> derainer = LiteDerainer("derain_int8.tflite", threads=2)  # doctest: +SKIP
        >>> result = derain_video("drive.mp4", "clean.mp4", derainer)  # doctest: +SKIP
        >>> print(result.summary())  # doctest: +SKIP
    """
    log = log or (lambda text: print(text, file=sys.stderr))
    input, output = os.fspath(input), os.fspath(output)
    if plan is None:
        plan = plan_video(input, codec, crf, start, duration, audio, output)
    else:
        plan = plan.for_output(output)
    info, start, duration = plan.info, plan.start, plan.duration
    extras = {k: os.fspath(v) for k, v in (("compare", compare), ("attention", attention)) if v}
    check_outputs([input], [output, *extras.values()], overwrite)
    model = frame_model(model, batch_size, attention=bool(attention), **derain_options)
    expected = plan.expected_frames
    result = VideoResult(input=input, output=output, extras=extras, expected=expected)
    _tell(result, log, "note", input, plan.output.notes)
    _tell(result, log, "warning", input, plan.output.warnings)
    writers = _open_writers(
        info, plan.output, output, extras, plan.crf, overwrite, result, log, io_threads
    )
    bar = progress_bar(result.expected, input, progress)
    stages = Stages(
        info,
        model,
        writers,
        result,
        bar,
        start=start,
        duration=duration,
        copied=plan.output.copied,
        status=DecodeStatus(),
        io_threads=io_threads,
    )
    began = time.perf_counter()
    try:
        stages.run()
        finish_bar(bar)
    finally:
        bar.close()
    result.seconds = time.perf_counter() - began
    for writer in writers.values():
        _tell(result, log, "warning", writer.path, writer.dropped)
    report_decoding(result, info, stages.status, start, duration, log)
    return result


def _open_writers(
    info: VideoInfo,
    plan: OutputPlan,
    output: str,
    extras: dict[str, str],
    crf: int | None,
    overwrite: bool,
    result: VideoResult,
    log: Callable[[str], None],
    threads: int,
) -> dict[str, VideoWriter]:
    """The output's writer and those of `compare` and `attention`, sharing the input's timing."""
    writers: dict[str, VideoWriter] = {}
    sizes = {
        "output": (info.width, info.height),
        "compare": (2 * info.width + COMPARE_GAP, info.height),
        "attention": (info.width, info.height),
    }
    color = (info.colorspace, info.color_range, info.color_primaries, info.color_trc)
    try:
        for name, path in (("output", output), *extras.items()):
            copied = _copied_into(path, plan, info) if name != "attention" else ()
            width, height = sizes[name]
            pix_fmt, note = pixel_format(plan.encoder, width, height)
            if note and name == "output":
                log(f"note: {info.path}: {note}")
                result.notes.append(note)
            writers[name] = VideoWriter(
                path,
                width,
                height,
                info.time_base,
                info.rate,
                encoder=plan.encoder,
                crf=crf,
                copy_from=(info, copied),
                display_matrix=info.display_matrix,
                color=color,
                overwrite=overwrite,
                pix_fmt=pix_fmt,
                threads=threads,
            )
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return writers


def _tell(result: VideoResult, log, kind: str, about: str, lines: Sequence[str]) -> None:
    """Logs `kind: about: line` for each line, and keeps the line in the result's notes."""
    for line in lines:
        log(f"{kind}: {about}: {line}")
        result.notes.append(line)


def _copied_into(path: str, plan: OutputPlan, info: VideoInfo) -> tuple[int, ...]:
    """The planned streams that the container of `path` takes (`compare` may be another)."""
    extension = os.path.splitext(path)[1].lower()
    if extension == plan.extension:
        return plan.copied
    trials = try_streams(output_format(extension), info)
    return tuple(i for i in plan.copied if trials[i].why_not is None)
