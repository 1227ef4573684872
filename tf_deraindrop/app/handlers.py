"""What the app's page does, as plain functions: no Gradio here, so tests need no browser.

`check_upload` says whether an upload is a photo or a video (by what the file
holds, not its name) and refuses one too large or neither; `Derainers` loads
and keeps one derainer per (file, precision, threads); `derain_photo` and
`derain_video_file` run one upload into a folder of outputs, the photo with
its attention heat map, the video with its audio, a progress callback and a
cancel that leaves no half-written file.

Example:
    >>> derainers = Derainers()  # doctest: +SKIP
    >>> derainer, seconds = derainers.get("gen.pkl", "auto", None)  # doctest: +SKIP
    >>> kind = check_upload("rainy.jpg", max_upload_mb=50)  # doctest: +SKIP
    >>> result = derain_photo("rainy.jpg", derainer, "out/")  # doctest: +SKIP
    >>> result.summary  # doctest: +SKIP
    '720 x 480 photo derained in 1.23 s'
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tf_deraindrop.video.frame_model import FrameModel

#: Generator files the app offers from `--models-dir`.
MODEL_SUFFIXES = (".keras", ".weights.h5", ".pkl", ".tflite")

#: What the page says when no model was given.
NO_MODEL_MESSAGE = (
    "no model: pass --weights gen.pkl|model.keras|model.tflite "
    "(or --models-dir DIR, a folder of such files)"
)

PRECISIONS = ("auto", "float32", "bfloat16")


class UploadError(ValueError):
    """An upload the app does not take (too large, not a photo or video); the message says why."""


class ModelError(ValueError):
    """A model that could not be loaded or run as asked; the message names the file."""


class Cancelled(Exception):
    """Raised inside a video's model when its job is cancelled."""


def default_weights() -> str | None:
    """The model used when neither `--weights` nor `--models-dir` is given (None: there is none).

    The package's built-in lite student (`tf_deraindrop.weights`).
    """
    from tf_deraindrop import weights

    return weights.default_weights()


def find_models(weights: str | None, models_dir: str | None) -> list[str]:
    """The generator files to offer: `weights` first, then those in `models_dir`, sorted.

    Args:
        weights: one generator file (`--weights`), or None.
        models_dir: a folder of generator files (`--models-dir`), or None; read
            again on each call, so files copied there later are offered too.

    Returns:
        Paths; `default_weights()` alone when neither argument gives one.
    """
    found = [weights] if weights else []
    if models_dir and os.path.isdir(models_dir):
        for name in sorted(os.listdir(models_dir)):
            path = os.path.join(models_dir, name)
            if name.lower().endswith(MODEL_SUFFIXES) and os.path.isfile(path):
                found.append(path)
    if not found and not models_dir and (default := default_weights()):
        found.append(default)
    return found


def check_upload(path: str | os.PathLike, max_upload_mb: float) -> str:
    """Whether an upload is a `"photo"` or a `"video"`, judged by what the file holds.

    Args:
        path: the uploaded file.
        max_upload_mb: the largest file taken, in MB (10**6 bytes).

    Returns:
        `"photo"` or `"video"`.

    Raises:
        UploadError: no file, too large, or neither a photo nor a video
            (a decompression bomb is refused as a photo too large).
    """
    from tf_deraindrop.utils.images import ImageReadError, open_image

    if path is None or not os.path.isfile(path):
        raise UploadError("no file was uploaded")
    name = os.path.basename(path)
    size = os.path.getsize(path)
    if size > max_upload_mb * 1e6:
        raise UploadError(
            f"{name} is {size / 1e6:.1f} MB; this app takes files up to "
            f"{max_upload_mb:g} MB (--max-upload-mb)"
        )
    try:
        with open_image(path):
            return "photo"
    except ImageReadError as err:
        if _is_too_large(err):
            raise UploadError(f"{name}: {_reason(err, path)}") from err
    from tf_deraindrop.video import VideoError, probe

    try:
        probe(path)
    except VideoError as err:
        # FFmpeg's reason ("no video stream in this LRC lyrics file") would only confuse.
        raise UploadError(
            f"{name} is neither a photo nor a video this app can read (photos: JPEG, PNG, "
            "WebP, TIFF, BMP; videos: MP4, MOV, MKV, WebM and what else FFmpeg decodes)"
        ) from err
    return "video"


def _is_too_large(err: Exception) -> bool:
    from tf_deraindrop.utils.images import ImageTooLargeError

    return isinstance(err, ImageTooLargeError)


def _reason(err: Exception, path: str | os.PathLike) -> str:
    # The messages name the upload's temporary path, which means nothing to the user.
    text = str(err).replace(os.fspath(path), "").strip(" :")
    return text or type(err).__name__


class Derainers:
    """Loaded derainers, one per (file, precision, threads), loaded on first use.

    Args:
        loader: `load_derainer` or a stand-in with its signature.
        **derain_options: passed to every load (`max_pixels`: the tiling of large photos).
    """

    def __init__(self, loader: Callable[..., Any] | None = None, **derain_options: Any):
        if loader is None:
            from tf_deraindrop.inference.loading import load_derainer

            loader = load_derainer
        self.loader = loader
        self.derain_options = derain_options
        self.loaded: dict[tuple[str, str, int | None], Any] = {}
        # Two browser tabs asking for the same model at once load it once.
        self.lock = threading.Lock()

    @staticmethod
    def key(path: str, precision: str, threads: int | None) -> tuple[str, str, int | None]:
        """The cache key; threads count only for a `.tflite` (see `get`)."""
        threads = int(threads) if threads and path.lower().endswith(".tflite") else None
        return os.path.realpath(path), precision, threads

    def get(self, path: str, precision: str = "auto", threads: int | None = None):
        """The derainer for `path` at `precision` and how long loading it took (0.0 if cached).

        `threads` applies to a `.tflite` only: TensorFlow fixes its thread count
        when it starts, so a Keras model runs with the threads it started with.

        Raises:
            ModelError: the file is missing, unreadable, or cannot run at `precision`.
        """
        from tf_deraindrop.inference.loading import WeightsError

        if not path:
            raise ModelError(NO_MODEL_MESSAGE)
        if precision not in PRECISIONS:
            raise ModelError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        key = self.key(path, precision, threads)
        with self.lock:
            if key in self.loaded:
                return self.loaded[key], 0.0
            began = time.perf_counter()
            options = {} if path.lower().endswith(".tflite") else self.derain_options
            try:
                derainer = self.loader(path, precision=precision, threads=key[2], **options)
            except WeightsError as err:
                raise ModelError(str(err)) from err
            self.loaded[key] = derainer
            return derainer, time.perf_counter() - began


@dataclass
class PhotoResult:
    """A derained photo: the arrays to show, the files written, and what it took.

    Attributes:
        rainy: the upload as read (EXIF orientation applied), uint8 RGB.
        derained: uint8 RGB, the size of `rainy`.
        heatmap: the final attention map as a uint8 RGB heat map, or None
            for a model without attention output.
        output: the derained PNG.
        heatmap_file: the heat map's PNG, or None.
        seconds: time of the deraining alone.
        engine: the derainer's `engine`.
    """

    rainy: np.ndarray
    derained: np.ndarray
    heatmap: np.ndarray | None
    output: str
    heatmap_file: str | None
    seconds: float
    engine: str

    @property
    def summary(self) -> str:
        h, w = self.derained.shape[:2]
        return f"{w} x {h} photo derained in {self.seconds:.2f} s"


def output_name(upload: str | os.PathLike, suffix: str, extension: str) -> str:
    """`rainy.jpg` -> `rainy_derained.png`: the upload's name with `suffix` and `extension`."""
    stem = os.path.basename(os.fspath(upload))
    for ending in (".weights.h5",):
        if stem.endswith(ending):
            stem = stem[: -len(ending)]
    stem = os.path.splitext(stem)[0] or "upload"
    return f"{stem}{suffix}{extension}"


def derain_photo(path: str | os.PathLike, derainer, output_dir: str | os.PathLike) -> PhotoResult:
    """Derains one photo into `output_dir`: `<name>_derained.png` and `<name>_attention.png`.

    Args:
        path: the photo (checked by `check_upload`).
        derainer: from `Derainers.get` (any `Derainer`).
        output_dir: a folder of this request's own, created if needed.

    Raises:
        UploadError: the photo cannot be read.
    """
    from tf_deraindrop.utils.images import ImageReadError, read_image, to_uint8, write_image
    from tf_deraindrop.utils.visualize import attention_heatmap

    try:
        rainy = to_uint8(read_image(path))
    except ImageReadError as err:
        raise UploadError(f"{os.path.basename(path)}: {_reason(err, path)}") from err
    os.makedirs(output_dir, exist_ok=True)
    began = time.perf_counter()
    if getattr(derainer, "has_attention", True):
        derained, attention = derainer.derain(rainy, return_attention=True)
        heatmap = attention_heatmap(attention)
    else:
        derained, heatmap = derainer.derain(rainy), None
    seconds = time.perf_counter() - began
    output = os.path.join(output_dir, output_name(path, "_derained", ".png"))
    write_image(output, derained)
    heatmap_file = None
    if heatmap is not None:
        heatmap_file = os.path.join(output_dir, output_name(path, "_attention", ".png"))
        write_image(heatmap_file, heatmap)
    return PhotoResult(
        rainy, derained, heatmap, output, heatmap_file, seconds, getattr(derainer, "engine", "")
    )


class _Watched(FrameModel):
    """A video's model that reports frames done and stops when its job is cancelled.

    `derain_video` calls the model on its own (calling) thread, so the
    progress callback runs on the request's thread, and raising `Cancelled`
    here makes it abort its writers, which removes their temporary files.
    """

    def __init__(self, model, cancel: threading.Event, on_frames: Callable[[int], None]):
        self.model, self.cancel, self.on_frames = model, cancel, on_frames
        self.batch_size = model.batch_size
        self.attention = model.attention
        self.done = 0

    def __call__(self, images: Sequence[np.ndarray]):
        if self.cancel.is_set():
            raise Cancelled
        result = self.model(images)
        self.done += len(images)
        self.on_frames(self.done)
        return result


@dataclass
class VideoOutcome:
    """A derained video: the file written and its summary line.

    Attributes:
        output: the derained video (H.264 MP4 with the upload's audio).
        frames: frames written.
        seconds: time of the whole pipeline.
        engine: the derainer's `engine`.
        notes: warnings and notes of `derain_video` (audio not copied, truncation).
    """

    output: str
    frames: int
    seconds: float
    engine: str
    notes: list[str]

    @property
    def summary(self) -> str:
        fps = self.frames / self.seconds if self.seconds else 0.0
        return f"{self.frames} frames derained in {self.seconds:.1f} s ({fps:.2f} fps)"


def derain_video_file(
    path: str | os.PathLike,
    derainer,
    output_dir: str | os.PathLike,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> VideoOutcome:
    """Derains one video into `output_dir/<name>_derained.mp4`, with its audio.

    Args:
        path: the video (checked by `check_upload`).
        derainer: from `Derainers.get`.
        output_dir: a folder of this request's own, created if needed.
        cancel: set it (from another thread) to stop at the next frame.
        on_progress: called with (frames done, frames expected or None) as frames are derained.

    Raises:
        Cancelled: `cancel` was set; no output file is left.
        UploadError: the video cannot be read or written.
    """
    from tf_deraindrop.video import (
        OutputExistsError,
        VideoError,
        VideoWriteError,
        derain_video,
        frame_model,
        probe,
    )

    cancel = cancel or threading.Event()
    name = os.path.basename(path)
    try:
        expected = probe(path).expected_frames()
    except VideoError as err:
        raise UploadError(f"{name}: {_reason(err, path)}") from err
    report = on_progress or (lambda done, total: None)
    report(0, expected)
    model = _Watched(frame_model(derainer), cancel, lambda done: report(done, expected))
    os.makedirs(output_dir, exist_ok=True)
    output = os.path.join(output_dir, output_name(path, "_derained", ".mp4"))
    notes: list[str] = []
    try:
        result = derain_video(path, output, model, progress=False, overwrite=True, log=notes.append)
    except (VideoError, VideoWriteError, OutputExistsError, ValueError) as err:
        raise UploadError(f"{name}: {_reason(err, path)}") from err
    if cancel.is_set():
        # Cancelled after the last frame, while the file was being finalised.
        os.remove(output)
        raise Cancelled
    return VideoOutcome(
        output, result.frames, result.seconds, getattr(derainer, "engine", ""), notes
    )


class Jobs:
    """The running video job of each browser session, so that its Cancel button can stop it."""

    def __init__(self):
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        """A fresh cancel event for `session`'s new job (an older job keeps its own)."""
        with self.lock:
            event = self.events[session] = threading.Event()
            return event

    def cancel(self, session: str) -> bool:
        """Asks `session`'s running job to stop; False if it has none."""
        with self.lock:
            event = self.events.get(session)
        if event is None or event.is_set():
            return False
        event.set()
        return True

    def finish(self, session: str, event: threading.Event) -> None:
        """Forgets `session`'s job, unless a newer one replaced it."""
        with self.lock:
            if self.events.get(session) is event:
                del self.events[session]
