"""Extract frames from videos into a folder of PNG (or JPEG) images.

For building a dataset from your own dashcam footage, or deraining single
frames: `DIR/<video name>_<time in ms>ms.png`, one file per frame kept, the
name sorting by time. `--every` keeps one frame every N seconds (the first
frame at or after each multiple of N), the rule `data_tools.synthesize`
uses for videos in `--clean-dir`.

Usage:
    python -m data_tools.frames drive.mp4 --out-dir frames/ --every 2
    python -m data_tools.frames drive.mp4 --out-dir frames/ --start 1:30 --duration 10

Exit status: 0 done; 1 a video ended early (truncated or damaged; the
frames that decoded are written); 2 bad input (not a video, bad flag,
existing frames without `--overwrite`), found before any frame is written.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Sequence

from tf_deraindrop.images import write_image


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


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m data_tools.frames",
        description="Extract frames from videos into a folder: <name>_<time>ms.png.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    parser.add_argument("--out-dir", required=True, help="folder for the frames")
    parser.add_argument(
        "--every", type=float, help="keep one frame every this many seconds (default: all)"
    )
    parser.add_argument("--start", help="begin at this time: seconds or [HH:]MM:SS[.ms]")
    parser.add_argument("--duration", help="read this long: seconds or [HH:]MM:SS[.ms]")
    parser.add_argument(
        "--format", choices=("png", "jpg"), default="png", help="image format (default: png)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace frames of these videos already there"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    from tf_deraindrop.video import VideoError, check_range, parse_time, probe

    extension = "." + args.format
    try:
        if args.every is not None and not args.every > 0:
            raise ValueError(f"--every {args.every}: must be more than 0 seconds")
        start = parse_time(args.start, "--start")
        duration = parse_time(args.duration, "--duration")
        stems = {}
        for path in args.videos:
            check_range(probe(path), start, duration)
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem in stems:
                raise ValueError(f"{stems[stem]} and {path} would write the same frame names")
            stems[stem] = path
            pattern = os.path.join(glob.escape(args.out_dir), f"{glob.escape(stem)}_*ms{extension}")
            if glob.glob(pattern) and not args.overwrite:
                raise ValueError(f"{args.out_dir} already holds frames of {path}; pass --overwrite")
        if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
            raise ValueError(f"--out-dir {args.out_dir} exists and is not a folder")
    except (VideoError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    status = 0
    for path in args.videos:
        try:
            written, truncated = extract_frames(
                path, args.out_dir, args.every, start, duration, extension, not args.quiet
            )
        except OSError as err:
            print(f"error: cannot write to {args.out_dir}: {err}", file=sys.stderr)
            return 1
        print(f"{path}: wrote {len(written)} frames to {args.out_dir}")
        if truncated:
            print(
                f"warning: {path} ends early (truncated or damaged): {len(written)} frames written",
                file=sys.stderr,
            )
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
