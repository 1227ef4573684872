"""The three threads of `derain_video`: decoding, the model and encoding overlap.

The reader thread decodes frames to RGB, the calling thread runs the model,
the writer thread encodes; bounded queues between them keep a few frames in
flight, so memory does not grow with the video's length. The packets of
the copied streams (audio, subtitles, data) travel through the same queues,
so they reach the writers in file order.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from tf_deraindrop.video.frame_model import FrameModel
from tf_deraindrop.video.passthrough import shift_packet
from tf_deraindrop.video.probing import VideoError, VideoInfo
from tf_deraindrop.video.reader import DecodeStatus, RGBConverter, demux
from tf_deraindrop.video.report import VideoResult, grow_bar
from tf_deraindrop.video.writer import VideoWriter

#: Frames waiting between two threads. Each is one frame (a few MB at 720p).
QUEUE_FRAMES = 8

#: Gap in pixels between the rainy and the derained frame of `--compare`.
COMPARE_GAP = 4

_END = object()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    # Waits in short steps, so that a thread blocked on a full queue sees `stop`.
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


class Stages:
    """One video's reader, model and writer stages, and what they share.

    Args:
        info: the input video.
        model: the `FrameModel` run on the calling thread.
        writers: open `VideoWriter`s by role: `"output"`, and `"compare"`
            and `"attention"` when asked for.
        result: filled in as frames are written (`frames`, `model_seconds`).
        bar: a progress bar, advanced by one a frame written.
        start, duration: the range decoded, in seconds (None: all).
        copied: input indexes of the streams whose packets go to the writers.
        status: filled in by the decoder.
        io_threads: threads of the decoder (0: FFmpeg's choice).
    """

    def __init__(
        self,
        info: VideoInfo,
        model: FrameModel,
        writers: dict[str, VideoWriter],
        result: VideoResult,
        bar,
        *,
        start: float | None,
        duration: float | None,
        copied: tuple[int, ...],
        status: DecodeStatus,
        io_threads: int,
    ):
        self.info = info
        self.model = model
        self.writers = writers
        self.result = result
        self.bar = bar
        self.start, self.duration, self.copied = start, duration, copied
        self.status, self.io_threads = status, io_threads
        # A range is written from time 0: its frames and packets move back by its start.
        self.shift = info.start + start if start else 0.0
        self.stop = threading.Event()
        self.frames_in: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.frames_out: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.errors: dict[str, BaseException] = {}

    def run(self) -> None:
        """Runs the stages to the end and finalises the writers; on any error, aborts them.

        Raises:
            VideoError: no frame decoded in the range.
            BaseException: what a stage raised (the writer's first), Ctrl-C included.
        """
        threads = [
            threading.Thread(target=self.read, name="video-read", daemon=True),
            threading.Thread(target=self.write, name="video-write", daemon=True),
        ]
        try:
            for thread in threads:
                thread.start()
            self.derain()
            _put(self.frames_out, _END, self.stop)
            for thread in threads:
                thread.join()
            for stage in ("write", "read"):
                if stage in self.errors:
                    raise self.errors[stage]
            if self.result.frames == 0:
                path = self.info.path
                raise VideoError(f"{path}: no frame decodes in the range asked for", path)
            for writer in self.writers.values():
                writer.close()
        except BaseException:
            self.stop.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(timeout=10)
            for writer in self.writers.values():
                writer.abort()
            raise

    def read(self) -> None:
        """The reader thread: RGB frames with their timing, and copied packets, into `frames_in`."""
        info, convert = self.info, RGBConverter()
        items = demux(
            info, self.start, self.duration, self.copied, self.status, threads=self.io_threads
        )
        step = round(1 / (info.rate * info.time_base)) if info.rate else 1
        try:
            for kind, payload, t in items:
                if kind == "packet":
                    if self.shift:
                        shift_packet(payload, self.shift)
                    # The stream's index now: the packet outlives the input container.
                    item = ("packet", payload, payload.stream.index)
                else:
                    item = ("video", convert(payload), self._timing(payload, t, step))
                if not _put(self.frames_in, item, self.stop):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread
            self.errors["read"] = err
        finally:
            items.close()
            _put(self.frames_in, _END, self.stop)

    def _timing(self, frame, t: float, step: int) -> tuple[int, int]:
        """`(pts, duration)` of a frame in the output, in `time_base` units."""
        info = self.info
        pts = frame.pts
        if pts is None:
            pts = round((t + info.start) / info.time_base)
        pts -= round(self.shift / info.time_base)
        return pts, int(frame.duration or step)

    def derain(self) -> None:
        """The model stage, on the calling thread: batches from `frames_in` to `frames_out`."""
        batch: list = []
        while True:
            item = _get(self.frames_in, self.stop)
            done = item is _END
            if not done and item[0] == "packet":
                if not _put(self.frames_out, item, self.stop):
                    break
                continue
            if not done:
                batch.append(item)
            if batch and (done or len(batch) == self.model.batch_size):
                self._derain_batch(batch)
                batch = []
            if done or self.stop.is_set():
                break

    def _derain_batch(self, batch: list) -> None:
        tick = time.perf_counter()
        derained, maps = self.model([b[1] for b in batch])
        self.result.model_seconds += time.perf_counter() - tick
        for i, (_, rainy, timing) in enumerate(batch):
            extra = (derained[i], maps[i] if maps else None, timing)
            if not _put(self.frames_out, ("video", rainy, extra), self.stop):
                break

    def write(self) -> None:
        """The writer thread: encodes the frames and copies the packets from `frames_out`."""
        try:
            while True:
                item = _get(self.frames_out, self.stop)
                if item is _END:
                    return
                kind, payload, extra = item
                if kind == "packet":
                    for writer in self.writers.values():
                        writer.copy(payload, extra)
                    continue
                self._write_frame(payload, *extra)
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread
            self.errors["write"] = err
            self.stop.set()

    def _write_frame(self, rainy: np.ndarray, derained, attention_map, timing) -> None:
        pts, step = timing
        self.writers["output"].write(derained, pts, step)
        if "compare" in self.writers:
            from tf_deraindrop.utils.visualize import side_by_side

            pair = side_by_side([rainy, derained], gap=COMPARE_GAP)
            self.writers["compare"].write(pair, pts, step)
        if "attention" in self.writers:
            from tf_deraindrop.utils.visualize import attention_heatmap

            self.writers["attention"].write(attention_heatmap(attention_map), pts, step)
        self.result.frames += 1
        grow_bar(self.bar)
