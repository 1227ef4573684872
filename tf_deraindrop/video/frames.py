"""Extract frames from videos into a folder of PNG (or JPEG) images.

For building a dataset from your own dashcam footage, or deraining single
frames: `DIR/<video name>_<time in ms>ms.png`, one file per frame kept, the
name sorting by time. `--every` keeps one frame every N seconds (the first
frame at or after each multiple of N), the rule `tf_deraindrop.synthetic.synthesize`
uses for videos in `--clean-dir`.

Usage:
    deraindrop frames drive.mp4 --out-dir frames/ --every 2
    deraindrop frames drive.mp4 --out-dir frames/ --start 1:30 --duration 10

Exit status: 0 done; 1 a video ended early (truncated or damaged; the
frames that decoded are written); 2 bad input (not a video, bad flag,
existing frames without `--overwrite`), found before any frame is written.
"""

from __future__ import annotations

import os
import sys

from tf_deraindrop.utils.images import write_image


def frame_name(stem: str, time: float, extension: str = ".png") -> str:
    """`drive_00012500ms.png` for the frame of `drive.mp4` at 12.5 s.

    Example:
        >>> frame_name("drive", 12.5)
        'drive_00012500ms.png'
    """
    return f"{stem}_{round(time * 1000):08d}ms{extension}"


def extract_frames(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    every: float | None = None,
    start: float | str | None = None,
    duration: float | str | None = None,
    extension: str = ".png",
    progress: bool = True,
) -> tuple[list[str], bool]:
    """Writes the frames of one video as images; returns their paths and whether it ended early.

    Args:
        path: the video.
        out_dir: the folder (created).
        every: seconds between kept frames (None: every frame).
        start, duration: the part to read (seconds or `"MM:SS"`).
        extension: `.png` (lossless) or `.jpg`.
        progress: a progress bar on stderr.

    Raises:
        VideoError: not a usable video (the message names it).

    Example:
        >>> paths, truncated = extract_frames("drive.mp4", "frames", every=2.0)  # doctest: +SKIP
    """
    from tqdm import tqdm

    from tf_deraindrop.video import iter_frames, parse_time, probe
    from tf_deraindrop.video.reader import DecodeStatus, looks_truncated

    path = os.fspath(path)
    start, duration = parse_time(start, "--start"), parse_time(duration, "--duration")
    info = probe(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    total = info.expected_frames(start, duration)
    if total and every:
        total = max(1, round(total / (every * float(info.rate or 1))))
    status = DecodeStatus()
    written = []
    os.makedirs(out_dir, exist_ok=True)
    with tqdm(total=total, desc=stem, unit="frame", disable=not progress, file=sys.stderr) as bar:
        for frame in iter_frames(path, start, duration, every=every, status=status):
            out = os.path.join(out_dir, frame_name(stem, frame.time, extension))
            write_image(out, frame.image)
            written.append(out)
            bar.update(1)
    return written, looks_truncated(info, status, start, duration)
