"""`deraindrop synthesize`: the command line of `tf_deraindrop.synthetic.synthesize`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tf_deraindrop.synthetic.presets import DEFAULT_PRESET, PRESETS
from tf_deraindrop.synthetic.synthesize import (
    DEFAULT_EVERY,
    SynthesisError,
    clean_sources,
    default_clean_images,
    synthesize_dataset,
)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deraindrop synthesize",
        description="Render synthetic raindrops over clean photos into the Raindrop dataset "
        "layout (data/<k>_rain.png, gt/<k>_clean.png, mask/<k>_mask.png).",
    )
    parser.add_argument(
        "--clean-dir",
        help="folder of clean photos and videos, or a video (default: the photos shipped "
        "with scikit-image)",
    )
    parser.add_argument(
        "--every",
        type=float,
        default=DEFAULT_EVERY,
        help=f"seconds between the frames taken from videos (default: {DEFAULT_EVERY:g})",
    )
    parser.add_argument("--out-dir", required=True, help="output folder")
    parser.add_argument("--pairs-per-image", type=int, default=4, help="default: 4")
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="resize and crop every photo to H x W first (random zoom and crop per pair)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=DEFAULT_PRESET,
        help="camera and glass set-up the drops are rendered for (default: "
        f"{DEFAULT_PRESET}, the Raindrop dataset's DSLR behind a pane 2-5 cm away)",
    )
    parser.add_argument(
        "--coverage",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="range of the fraction of the glass wetted by drops (default: the preset's)",
    )
    parser.add_argument(
        "--drop-radius",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="range of drop radii on the glass, in millimetres (default: the preset's)",
    )
    parser.add_argument("--start-index", type=int, default=0, help="number of the first pair")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="skip unreadable or too small photos (named on stderr) instead of stopping",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    params = {}
    if args.coverage is not None:
        params["coverage"] = tuple(args.coverage)
    if args.drop_radius is not None:
        params["drop_radius"] = tuple(args.drop_radius)
    try:
        if args.clean_dir is None:
            clean = default_clean_images()
        else:
            if not args.every > 0:
                raise SynthesisError(f"--every {args.every}: must be more than 0 seconds")
            clean, skipped = clean_sources(args.clean_dir, args.every)
            for other, reason in skipped:
                print(
                    f"skipped: {reason if str(other) in reason else f'{other}: {reason}'}",
                    file=sys.stderr,
                )
            if not clean:
                raise SynthesisError(f"{args.clean_dir}: no image or video files in this folder")
        count = synthesize_dataset(
            args.out_dir,
            clean_images=clean,
            pairs_per_image=args.pairs_per_image,
            seed=args.seed,
            size=tuple(args.size) if args.size else None,
            progress=not args.quiet,
            start_index=args.start_index,
            on_error="skip" if args.keep_going else "raise",
            preset=args.preset,
            **params,
        )
    except (SynthesisError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write to {args.out_dir}: {err}", file=sys.stderr)
        return 2
    expected = args.pairs_per_image * len(clean)
    print(f"wrote {count} pairs to {args.out_dir}")
    if count < expected:
        print(
            f"error: {expected - count} pairs not written (see the skipped photos above)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
