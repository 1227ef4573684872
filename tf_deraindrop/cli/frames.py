"""`deraindrop frames`: the command line of `tf_deraindrop.video.frames`."""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Sequence

from tf_deraindrop.video.frames import extract_frames


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deraindrop frames",
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
