"""Deraining a video: decoding, the model and encoding overlap in three threads.

The reader thread decodes frames to RGB, the calling thread runs the model,
the writer thread encodes; bounded queues between them keep a few frames in
flight, so memory does not grow with the video's length.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tf_deraindrop.video.reader import (
    DecodeStatus,
    RGBConverter,
    VideoError,
    VideoInfo,
    demux,
    looks_truncated,
    parse_time,
    probe,
)
from tf_deraindrop.video.writer import (
    OutputExistsError,
    VideoWriter,
    choose_encoder,
    pixel_format,
    plan_output,
)

#: Frames waiting between two threads. Each is one frame (a few MB at 720p).
QUEUE_FRAMES = 8

#: Threads of the decoder and of each encoder (0: FFmpeg's choice, about one
#: a core). One each made no difference to the int8 pipeline at 480 x 720 on
#: 2 cores: it spends under 1% of its time outside the model's calls there
#: (`benchmarks/bench_video.py`).
IO_THREADS = 0

#: Gap in pixels between the rainy and the derained frame of `--compare`.
COMPARE_GAP = 4

_END = object()


class FrameModel:
    """A model as a function of a list of uint8 RGB frames of one size.

    Built by `frame_model`; `__call__` returns the derained frames (uint8)
    and, with `attention`, the final attention maps (float32 `(H, W)`).

    Attributes:
        batch_size: frames per call.
        attention: whether attention maps are returned.
    """

    batch_size = 1
    attention = False

    def __call__(self, images: Sequence[np.ndarray]):
        raise NotImplementedError


class _PerFrame(FrameModel):
    """An object with `derain(image, return_attention=...)`: a `LiteDerainer`, say."""

    def __init__(self, model, attention: bool):
        if attention and getattr(model, "has_attention", True) is False:
            raise ValueError(
                f"{getattr(model, 'path', 'the model')} has no attention output; "
                "export it with --with-attention"
            )
        self.model, self.attention = model, attention

    def __call__(self, images):
        if not self.attention:
            return [self.model.derain(image) for image in images], None
        pairs = [self.model.derain(image, return_attention=True) for image in images]
        return [p[0] for p in pairs], [p[1] for p in pairs]


class _KerasBatches(FrameModel):
    """A Keras model with the Generator's call contract, up to `batch_size` frames a pass.

    A pass holds at most `max_pixels` (padded): fewer frames go together
    when they are large, and a frame too large for one pass goes alone
    through `tf_deraindrop.derain`, which tiles it. So do all frames when
    `derain_options` name a tile size.
    """

    def __init__(self, model, batch_size: int, attention: bool, max_pixels, derain_options):
        self.model, self.attention = model, attention
        self.batch_size = max(1, int(batch_size))
        self.max_pixels = max_pixels
        self.derain_options = dict(derain_options)

    def per_pass(self, h: int, w: int) -> int:
        """Frames of `h` x `w` run together (1: one at a time through `derain`)."""
        if self.batch_size == 1 or set(self.derain_options) - {"max_pixels"}:
            return 1
        if self.max_pixels is None:
            return self.batch_size
        pixels = (h + (-h) % 4) * (w + (-w) % 4)
        return max(1, min(self.batch_size, self.max_pixels // pixels))

    def __call__(self, images):
        from tf_deraindrop.inference import derain

        h, w = images[0].shape[:2]
        size = self.per_pass(h, w)
        if size == 1:
            results = [
                derain(self.model, image, return_attention=self.attention, **self.derain_options)
                for image in images
            ]
            if not self.attention:
                return results, None
            return [r[0] for r in results], [r[1] for r in results]
        derained, maps = [], []
        for first in range(0, len(images), size):
            out, attention = self._pass(images[first : first + size], size)
            derained += out
            maps += attention
        return derained, (maps if self.attention else None)

    def _pass(self, images, size: int):
        from tf_deraindrop.images import to_float_rgb, to_uint8
        from tf_deraindrop.inference import pad_to_multiple

        h, w = images[0].shape[:2]
        batch = [pad_to_multiple(to_float_rgb(image)) for image in images]
        # A short last batch is filled up with copies: one traced shape.
        batch += [batch[-1]] * (size - len(batch))
        result = self.model.predict_on_batch(np.stack(batch))
        count = len(images)
        outputs = np.asarray(result["outputs"][-1])[:count, :h, :w]
        derained = [to_uint8(o) for o in outputs]
        if not self.attention:
            return derained, []
        return derained, list(np.asarray(result["attention"][-1])[:count, :h, :w, 0])


def frame_model(
    model, batch_size: int | None = None, attention: bool = False, **derain_options
) -> FrameModel:
    """Wraps a model for `derain_video`.

    Args:
        model: a Keras model with the Generator's call contract (a dict with
            `"attention"`, a list of maps, and `"outputs"`, the last of which is
            the derained image), or an object with `derain(image,
            return_attention=False)` such as a `LiteDerainer`.
        batch_size: frames per pass of a Keras model (None: `DEFAULT_BATCH`).
        attention: also return the final attention maps.
        **derain_options: passed to `tf_deraindrop.derain` (such as `tile`),
            which then runs frame by frame; `precision` (`tf_deraindrop.precision`)
            picks the model once instead.

    Raises:
        ValueError: attention asked of a model without that output.
    """
    if isinstance(model, FrameModel):
        return model
    if hasattr(model, "derain") and not hasattr(model, "predict_on_batch"):
        return _PerFrame(model, attention)
    precision = derain_options.pop("precision", None)
    if precision is not None:
        # Resolved once here, so that frames still go in batches of `batch_size`.
        from tf_deraindrop.precision import resolve_generator

        model = resolve_generator(model, precision).model
    from tf_deraindrop import inference

    max_pixels = derain_options.pop("max_pixels", getattr(inference, "DEFAULT_MAX_PIXELS", None))
    if "max_pixels" in _derain_parameters():
        # None too: one pass per frame, whatever its size (--max-pixels 0).
        derain_options.setdefault("max_pixels", max_pixels)
    batch = DEFAULT_BATCH if batch_size is None else batch_size
    return _KerasBatches(model, batch, attention, max_pixels, derain_options)


def _derain_parameters() -> set[str]:
    import inspect

    from tf_deraindrop.inference import derain

    return set(inspect.signature(derain).parameters)


#: Frames per pass of a Keras model. On this CPU a batch of 4 runs at the
#: speed of 4 single passes (`benchmarks/bench_video.py`), so frames go one
#: at a time, which keeps the queues short; `--batch` raises it (on a GPU).
DEFAULT_BATCH = 1


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


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _END


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
    **derain_options,
) -> VideoResult:
    """Derains a video file into another, frame by frame, keeping its timing and audio.

    The output has the input's frames (in the range), timestamps (constant or
    variable frame rate), size, rotation metadata and colour tags; its audio
    streams are copied packet by packet without re-encoding. It is written
    under a temporary name and renamed when finalised.

    Args:
        input: the video.
        output: the derained video; its extension picks the container
            (`.mp4`, `.mkv`, `.mov`, `.webm`).
        model: a Keras model with the Generator's call contract (a
            `Generator`), a `LiteDerainer`, or a `FrameModel`.
        codec: the encoder (default `libx264`; `ffv1` is lossless).
        crf: quality of `libx264`/`libx265`/`libvpx-vp9`/`libsvtav1` (lower is better).
        compare: also write rainy | derained side by side to this file.
        attention: also write the attention heat map (`tf_deraindrop.visualize`
            palette) to this file.
        start, duration: seconds (or `"MM:SS"`) of the part to derain.
        overwrite: replace existing outputs.
        batch_size: frames per pass of a Keras model (`DEFAULT_BATCH`).
        progress: show a progress bar (frames, fps, time left) on stderr.
        audio: copy the audio streams.
        log: where notes and warnings go (default: stderr).
        io_threads: threads of the decoder and of each encoder (0: FFmpeg's
            choice, one or more a core; see `IO_THREADS`).
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
        >>> from tf_deraindrop.lite import LiteDerainer  # doctest: +SKIP
        >>> derainer = LiteDerainer("derain_int8.tflite", threads=2)  # doctest: +SKIP
        >>> result = derain_video("drive.mp4", "clean.mp4", derainer)  # doctest: +SKIP
        >>> print(result.summary())  # doctest: +SKIP
    """
    log = log or (lambda text: print(text, file=sys.stderr))
    input, output = os.fspath(input), os.fspath(output)
    start, duration = parse_time(start, "--start"), parse_time(duration, "--duration")
    info = probe(input)
    check_range(info, start, duration)
    encoder = choose_encoder(codec)
    if crf is not None and encoder.crf is None:
        raise ValueError(f"--crf: {encoder.name} has no CRF setting")
    plan = plan_output(info, encoder, audio=audio)
    extras = {k: os.fspath(v) for k, v in (("compare", compare), ("attention", attention)) if v}
    check_outputs([input], [output, *extras.values()], overwrite)
    model = frame_model(model, batch_size, attention=bool(attention), **derain_options)
    for note in plan.notes:
        log(f"note: {input}: {note}")

    result = VideoResult(input=input, output=output, extras=extras, notes=list(plan.notes))
    result.expected = info.expected_frames(start, duration)
    shift = info.start + start if start else 0.0
    writers = _open_writers(info, plan, output, extras, crf, overwrite, result, log, io_threads)
    status = DecodeStatus()
    stop = threading.Event()
    frames_in: queue.Queue = queue.Queue(QUEUE_FRAMES)
    frames_out: queue.Queue = queue.Queue(QUEUE_FRAMES)
    errors: dict[str, BaseException] = {}
    from tqdm import tqdm

    bar = tqdm(
        total=result.expected,
        desc=os.path.basename(input),
        unit="frame",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def read() -> None:
        convert = RGBConverter()
        items = demux(info, start, duration, bool(plan.audio), status, threads=io_threads)
        step = round(1 / (info.rate * info.time_base)) if info.rate else 1
        try:
            for kind, payload, t in items:
                if kind == "audio":
                    if shift:
                        ticks = round(shift / payload.time_base)
                        payload.pts -= ticks
                        if payload.dts is not None:
                            payload.dts -= ticks
                    # The stream's index now: the packet outlives the input container.
                    item = ("audio", payload, payload.stream.index)
                else:
                    pts = payload.pts
                    if pts is None:
                        pts = round((t + info.start) / info.time_base)
                    pts -= round(shift / info.time_base)
                    item = ("video", convert(payload), (pts, int(payload.duration or step)))
                if not _put(frames_in, item, stop):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread
            errors["read"] = err
        finally:
            items.close()
            _put(frames_in, _END, stop)

    def write() -> None:
        try:
            while True:
                item = _get(frames_out, stop)
                if item is _END:
                    return
                kind, payload, extra = item
                if kind == "audio":
                    for writer in writers.values():
                        writer.copy(payload, extra)
                    continue
                rainy, derained, attention_map, (pts, step) = payload, *extra
                writers["output"].write(derained, pts, step)
                if "compare" in writers:
                    from tf_deraindrop.visualize import side_by_side

                    pair = side_by_side([rainy, derained], gap=COMPARE_GAP)
                    writers["compare"].write(pair, pts, step)
                if "attention" in writers:
                    from tf_deraindrop.visualize import attention_heatmap

                    writers["attention"].write(attention_heatmap(attention_map), pts, step)
                result.frames += 1
                bar.update(1)
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread
            errors["write"] = err
            stop.set()

    threads = [
        threading.Thread(target=read, name="video-read", daemon=True),
        threading.Thread(target=write, name="video-write", daemon=True),
    ]
    began = time.perf_counter()
    try:
        for thread in threads:
            thread.start()
        batch: list = []
        while True:
            item = _get(frames_in, stop)
            done = item is _END
            if not done and item[0] == "audio":
                if not _put(frames_out, item, stop):
                    break
                continue
            if not done:
                batch.append(item)
            if batch and (done or len(batch) == model.batch_size):
                tick = time.perf_counter()
                derained, maps = model([b[1] for b in batch])
                result.model_seconds += time.perf_counter() - tick
                for i, (_, rainy, meta) in enumerate(batch):
                    extra = (derained[i], maps[i] if maps else None, meta)
                    if not _put(frames_out, ("video", rainy, extra), stop):
                        break
                batch = []
            if done or stop.is_set():
                break
        _put(frames_out, _END, stop)
        for thread in threads:
            thread.join()
        if "write" in errors:
            raise errors["write"]
        if "read" in errors:
            raise errors["read"]
        if result.frames == 0:
            raise VideoError(f"{input}: no frame decodes in the range asked for", input)
        for writer in writers.values():
            writer.close()
    except BaseException:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=10)
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        bar.close()
    result.seconds = time.perf_counter() - began
    result.damaged = status.damaged
    result.truncated = looks_truncated(info, status, start, duration)
    if result.truncated:
        count = f"{result.frames} of {result.expected}" if result.expected else result.frames
        result.reason = status.error or "the file ends before its header says"
        log(
            f"warning: {input} ends early: {count} frames decoded ({result.reason}); "
            f"they were written to {output}"
        )
    if status.damaged:
        log(f"warning: {input}: {status.damaged} damaged packets skipped")
    return result


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


def _open_writers(info, plan, output, extras, crf, overwrite, result, log, threads) -> dict:
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
                audio_from=(info, plan.audio) if name != "attention" else None,
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
