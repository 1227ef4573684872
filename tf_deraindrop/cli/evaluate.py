"""Evaluate a generator on a Raindrop-layout test set with the published protocol.

PSNR and SSIM on the Y channel of the uint8 output, full resolution cropped
to multiples of 4, SSIM as skimage's defaults (docs/architecture.md, section 8; see
`tf_deraindrop.metrics`). The same numbers for the rainy input itself are the
baseline every table should be read against.

Usage:
    python -m tf_deraindrop.evaluate --weights generator.keras --data-dir Raindrop/test_a \\
        [--csv results.csv] [--limit N] [--skip-bad]
    python -m tf_deraindrop.evaluate --input-only --data-dir Raindrop/test_a
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Sequence

from tf_deraindrop.cli.args import (
    add_max_pixels_argument,
    add_precision_argument,
    fail,
    max_pixels_kwargs,
)

COLUMNS = ("name", "psnr", "ssim", "input_psnr", "input_ssim")


def _read_pair(pair) -> tuple:
    """`(rainy, clean)` uint8 RGB of one pair.

    Raises:
        ImageReadError: an unreadable image.
        DatasetError: the two differ in size, or are too small for the protocol.
    """
    from tf_deraindrop.data import DatasetError
    from tf_deraindrop.utils.images import read_image, to_uint8

    rainy = to_uint8(read_image(pair.rainy))
    clean = to_uint8(read_image(pair.clean))
    if rainy.shape != clean.shape:
        raise DatasetError(
            f"{pair.rainy} ({rainy.shape[1]} x {rainy.shape[0]}) and {pair.clean} "
            f"({clean.shape[1]} x {clean.shape[0]}) differ in size."
        )
    if min(rainy.shape[:2]) < 8:
        raise DatasetError(f"{pair.rainy}: too small for the protocol (under 8 px).")
    return rainy, clean


def evaluate_pairs(
    pairs: Sequence,
    generator=None,
    progress: bool = True,
    skip_bad: bool = False,
    problems: list[tuple[str, str]] | None = None,
    max_pixels: int | None = None,
) -> list[dict]:
    """Per-pair protocol metrics of the generator's output and of the rainy input.

    Args:
        pairs: `data.Pair` items (masks are not used).
        generator: a `Generator`, or None to measure only the input baseline.
        progress: show a progress bar on stderr.
        skip_bad: skip an unreadable pair or one whose sizes differ (counted
            in `problems`) instead of raising.
        problems: if given, `(path, reason)` of every skipped pair is appended.
        max_pixels: `derain`'s tiling limit (None: its default; 0: one pass
            over every image, whatever its size).

    Returns:
        One dict per pair with the keys of `COLUMNS` (`psnr`/`ssim` None
        without a generator).

    Raises:
        DatasetError: an unreadable image or a size mismatch, naming the file.

    Example:
        >>> rows = evaluate_pairs(find_pairs("test_a"), generator)  # doctest: +SKIP
        >>> summarize(rows)["psnr"]  # doctest: +SKIP
    """
    from tqdm import tqdm

    from tf_deraindrop.data import DatasetError
    from tf_deraindrop.metrics import psnr_y, ssim_y
    from tf_deraindrop.utils.images import ImageReadError

    if generator is not None:
        from tf_deraindrop.inference.keras import derain
    derain_options = max_pixels_kwargs(max_pixels)
    rows = []
    bar = tqdm(pairs, desc="evaluate", unit="pair", disable=not progress, file=sys.stderr)
    for pair in bar:
        try:
            rainy, clean = _read_pair(pair)
        except (ImageReadError, DatasetError) as err:
            if not skip_bad:
                raise DatasetError(str(err)) from err
            if problems is not None:
                problems.append((pair.rainy, str(err)))
            continue
        row = {
            "name": pair.name,
            "psnr": None,
            "ssim": None,
            "input_psnr": psnr_y(rainy, clean),
            "input_ssim": ssim_y(rainy, clean),
        }
        if generator is not None:
            output = derain(generator, rainy, **derain_options)
            row["psnr"] = psnr_y(output, clean)
            row["ssim"] = ssim_y(output, clean)
        rows.append(row)
        shown = row["psnr"] if generator is not None else row["input_psnr"]
        bar.set_postfix(psnr=f"{shown:.2f}")
    return rows


def summarize(rows: Sequence[dict]) -> dict:
    """Means over the pairs of every metric column (None where not measured)."""
    means = {}
    for key in COLUMNS[1:]:
        values = [r[key] for r in rows if r[key] is not None]
        means[key] = sum(values) / len(values) if values else None
    return means


def write_csv(path: str, rows: Sequence[dict]) -> None:
    """Writes the per-pair rows atomically (temporary name, then rename).

    Raises:
        OSError: the file could not be written (no temporary is left behind).
    """
    from tf_deraindrop.utils.files import atomic_path, remove_stale_partials

    # What a killed earlier run left beside the file goes first.
    remove_stale_partials(os.path.dirname(os.path.abspath(path)))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(
                [row["name"]] + ["" if row[k] is None else f"{row[k]:.4f}" for k in COLUMNS[1:]]
            )


def _fmt(value, digits):
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def format_summary(means: dict, count: int) -> str:
    """The table printed at the end of a run."""
    lines = [f"{'':<14}{'PSNR (dB)':>10}{'SSIM':>9}   over {count} pairs"]
    if means["psnr"] is not None:
        lines.append(f"{'derained':<14}{_fmt(means['psnr'], 2):>10}{_fmt(means['ssim'], 4):>9}")
    lines.append(
        f"{'rainy input':<14}{_fmt(means['input_psnr'], 2):>10}{_fmt(means['input_ssim'], 4):>9}"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tf_deraindrop.evaluate",
        description=(
            "PSNR/SSIM of a generator on a Raindrop-layout test set, published protocol "
            "(Y channel, crop to multiples of 4, skimage SSIM), with the rainy input as baseline."
        ),
    )
    parser.add_argument("--weights", help="generator: .keras, .weights.h5 or the authors' gen.pkl")
    parser.add_argument(
        "--data-dir", required=True, help="test set in the Raindrop layout (data/, gt/)"
    )
    parser.add_argument("--csv", help="write per-image numbers to this CSV file")
    parser.add_argument("--limit", type=int, help="evaluate only the first N pairs")
    input_only = "measure only the rainy input against the clean image (no --weights)"
    parser.add_argument("--input-only", action="store_true", help=input_only)
    skip_bad = "skip bad pairs with a warning instead of failing"
    parser.add_argument("--skip-bad", action="store_true", help=skip_bad)
    add_max_pixels_argument(parser)
    add_precision_argument(parser, note="; the precision used is printed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.weights is None and not args.input_only:
        parser.error("--weights is required (or --input-only for the input baseline alone)")
    if args.weights is not None and args.input_only:
        parser.error("--input-only takes no --weights")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    return args


def _find_pairs(args, problems: list[tuple[str, str]]) -> list:
    """The first `--limit` pairs of `--data-dir`; raises DatasetError."""
    import warnings

    from tf_deraindrop.data import DatasetWarning, find_pairs

    with warnings.catch_warnings():
        # Skipped files are reported once, by `_report`, with the evaluation's own.
        warnings.simplefilter("ignore", DatasetWarning)
        pairs = find_pairs(args.data_dir, skip_bad=args.skip_bad, problems=problems)
    return pairs if args.limit is None else pairs[: args.limit]


def _load(weights: str | None, precision: str):
    """`(generator, resolved precision)`, `(None, None)` without weights; raises WeightsError."""
    if weights is None:
        return None, None
    from tf_deraindrop.inference.loading import load_generator_weights
    from tf_deraindrop.inference.precision import resolve_generator

    resolved = resolve_generator(load_generator_weights(weights), precision)
    return resolved.model, resolved


def _report(args, rows: list[dict], problems: list[tuple[str, str]], resolved) -> int:
    """Prints the skipped pairs, the table and writes the CSV; the exit status."""
    for path, reason in problems:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    if problems:
        print(f"warning: skipped {len(problems)} bad pairs", file=sys.stderr)
    if not rows:
        return fail("no pair could be evaluated")
    # The table first: a CSV that cannot be written must not lose the numbers.
    what = args.weights if resolved is not None else "the rainy input only"
    print(f"{args.data_dir}: {what} (Y channel, crop to multiples of 4, skimage SSIM)")
    if resolved is not None:
        print(f"Precision: {resolved}")
    print(format_summary(summarize(rows), len(rows)), flush=True)
    if args.csv:
        try:
            write_csv(args.csv, rows)
        except OSError as err:
            return fail(f"could not write --csv {args.csv}: {err.strerror or err}")
        print(f"Per-image numbers: {args.csv}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from tf_deraindrop.data import DatasetError
    from tf_deraindrop.inference.loading import WeightsError

    problems: list[tuple[str, str]] = []
    try:
        pairs = _find_pairs(args, problems)
        generator, resolved = _load(args.weights, args.precision)
        rows = evaluate_pairs(
            pairs,
            generator,
            progress=not args.no_progress,
            skip_bad=args.skip_bad,
            problems=problems,
            max_pixels=args.max_pixels,
        )
    except (DatasetError, WeightsError) as err:
        return fail(err)
    return _report(args, rows, problems, resolved)


if __name__ == "__main__":
    sys.exit(main())
