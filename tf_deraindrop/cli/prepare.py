"""`deraindrop prepare`: the command line of `tf_deraindrop.data.prepare`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tf_deraindrop.data.pairs import LAYOUT
from tf_deraindrop.data.prepare import (
    _NUMBERS,
    DatasetReport,
    check_dataset,
    format_table,
    write_contact_sheet,
    write_report_csv,
)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deraindrop prepare",
        description="Check a Raindrop-layout dataset (data/<k>_rain.*, gt/<k>_clean.*), "
        "compute its masks, write a contact sheet and optionally TFRecords.",
    )
    add = parser.add_argument
    add("--data-dir", required=True, help="split folder holding data/ and gt/")
    add(
        "--reduce",
        choices=("max", "sum"),
        default="max",
        help="combine channel differences (default max)",
    )
    for flag, kind, default, text in _NUMBERS:
        add(flag, type=kind, default=default, help=text)
    add("--no-masks", action="store_true", help="do not write mask/<k>_mask.png")
    add("--mask-dir", help="where masks go (default: <data-dir>/mask)")
    add(
        "--overwrite-masks",
        action="store_true",
        help="recompute masks that already exist (default: keep them, e.g. exact synthetic masks)",
    )
    add("--contact-sheet", help="PNG path (default: <data-dir>/contact_sheet.png)")
    add("--report", help="also write a per-pair CSV report here")
    add("--tfrecords", help="write sharded TFRecords of the good pairs into this folder")
    add("--prefix", help="TFRecord shard name prefix (default: the data-dir's name)")
    add("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def _usage_error(args: argparse.Namespace, data_dir: Path) -> str | None:
    """The message of a usage error (exit status 2), or None."""
    if not data_dir.is_dir():
        return f"--data-dir {data_dir}: no such folder"
    if not (data_dir / "data").is_dir() and not (data_dir / "gt").is_dir():
        splits = sorted(p.name for p in data_dir.iterdir() if (p / "data").is_dir())
        hint = f"; it holds the splits {', '.join(splits)}: pass one of them" if splits else ""
        return f"--data-dir {data_dir}: no data/ or gt/ folder{hint}"
    if args.threshold <= 0 or args.num_shards < 1 or args.contact_pairs < 0:
        return "--threshold and --num-shards must be positive, --contact-pairs >= 0"
    return None


def _write_outputs(report: DatasetReport, args: argparse.Namespace, mask_kwargs: dict) -> None:
    """The contact sheet, the CSV report and the TFRecords the flags ask for."""
    data_dir, good = report.data_dir, report.good_pairs
    if args.contact_pairs:
        sheet = Path(args.contact_sheet) if args.contact_sheet else data_dir / "contact_sheet.png"
        shown = write_contact_sheet(report, sheet, args.contact_pairs, mask_kwargs=mask_kwargs)
        if shown:
            print(f"contact sheet of {shown} pairs: {sheet}")
    if args.report:
        write_report_csv(report, args.report)
        print(f"report: {args.report}")
    if args.tfrecords and good:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from tf_deraindrop.data.record_writer import write_tfrecords

        pairs = [
            {"rainy": p.rainy, "clean": p.clean, "mask": p.mask_path, "name": p.key} for p in good
        ]
        shards = write_tfrecords(
            pairs,
            args.tfrecords,
            num_shards=args.num_shards,
            prefix=args.prefix or data_dir.name or "train",
            mask_kwargs=mask_kwargs,
            progress=not args.quiet,
        )
        print(f"wrote {len(good)} pairs into {len(shards)} TFRecord shards in {args.tfrecords}")
    elif args.tfrecords:
        print("no good pairs: no TFRecords written", file=sys.stderr)


def _print_summary(report: DatasetReport, mask_dir: Path | None) -> int:
    """Prints the statistics and the problem table; returns the exit status (0 or 1)."""
    shifts = np.asarray([p.shift for p in report.pairs if p.shift is not None])
    coverages = np.asarray([p.coverage for p in report.pairs if p.coverage is not None])
    print(f"{report.data_dir}: {len(report.pairs)} pairs, {len(report.good_pairs)} good")
    if len(shifts):
        magnitude = np.abs(shifts).max(axis=1)
        print(
            f"  shift (px, larger axis): median {np.median(magnitude):.2f}, "
            f"max {magnitude.max():.2f}"
        )
    kept = sum(p.mask_source == "kept" for p in report.pairs)
    computed = sum(p.mask_source == "computed" for p in report.pairs)
    where = "" if mask_dir is None else f" into {mask_dir}"
    print(
        f"  masks: {computed} computed{where}, {kept} existing kept "
        "(--overwrite-masks recomputes them)"
    )
    if len(coverages):
        print(
            f"  mask coverage: mean {100 * coverages.mean():.1f} %, "
            f"min {100 * coverages.min():.1f} %, max {100 * coverages.max():.1f} %"
        )
    problems = report.all_problems()
    if not problems:
        print("no problems found")
        return 0
    print(f"\n{len(problems)} problem(s):")
    rows = [(p.kind, p.path, p.detail) for p in problems]
    print(format_table(rows, ("problem", "file", "detail")))
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    data_dir = Path(args.data_dir)
    error = _usage_error(args, data_dir)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    mask_dir = Path(args.mask_dir) if args.mask_dir else data_dir / LAYOUT["mask"][0]
    mask_kwargs = {
        "threshold": args.threshold / 255.0,
        "reduce": args.reduce,
        "close_size": args.close,
        "open_size": args.open,
    }
    try:
        report = check_dataset(
            data_dir,
            write_masks=not args.no_masks,
            mask_kwargs=mask_kwargs,
            max_shift=args.max_shift,
            min_size=args.min_size,
            progress=not args.quiet,
            mask_dir=mask_dir,
            overwrite_masks=args.overwrite_masks,
        )
        _write_outputs(report, args, mask_kwargs)
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return _print_summary(report, None if args.no_masks else mask_dir)


if __name__ == "__main__":
    sys.exit(main())
