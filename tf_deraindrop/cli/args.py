"""What the inference command lines (`predict`, `evaluate`) share: arguments and error lines.

Nothing here imports numpy or TensorFlow, so that `--help` and argument
errors answer at once.

Example:
    >>> parser = argparse.ArgumentParser()
    >>> add_max_pixels_argument(parser)
    >>> add_precision_argument(parser)
    >>> args = parser.parse_args(["--max-pixels", "0"])
    >>> max_pixels_kwargs(args.max_pixels), args.precision
    ({'max_pixels': None}, 'auto')
"""

from __future__ import annotations

import argparse
import sys

#: The smallest `--max-pixels` the tools take (a tile of 512 x 512): smaller
#: tiles are mostly overlap.
MIN_MAX_PIXELS = 512 * 512


def fail(message: object, status: int = 2) -> int:
    """Prints `error: message` on stderr and returns `status` (2: bad input)."""
    print(f"error: {message}", file=sys.stderr)
    return status


def positive_int(text: str) -> int:
    """An argparse `type`: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _max_pixels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value != 0 and value < MIN_MAX_PIXELS:
        raise argparse.ArgumentTypeError(
            f"must be 0 (no tiles) or at least {MIN_MAX_PIXELS} (512 x 512), got {value}"
        )
    return value


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """Adds `--max-pixels N` (dest `max_pixels`, default None) to a tool's parser.

    None means `derain`'s default; 0 means whole images in one pass. Pass it
    on as `derain(..., **max_pixels_kwargs(args.max_pixels))`.
    """
    parser.add_argument(
        "--max-pixels",
        dest="max_pixels",
        type=_max_pixels,
        metavar="N",
        help=(
            "derain images larger than N pixels in overlapping tiles of at most N pixels "
            "(default: 1048576, about 2 GB of memory whatever the size; with more memory, "
            "larger tiles are a little faster; 0: whole images, about 1.3 KB a pixel)"
        ),
    )


def max_pixels_kwargs(max_pixels: int | None) -> dict:
    """`derain` keyword arguments for a `--max-pixels` value (None: derain's default)."""
    if max_pixels is None:
        return {}
    return {"max_pixels": max_pixels or None}


def add_precision_argument(parser: argparse.ArgumentParser, scope: str = "", note: str = ""):
    """Adds `--precision {auto,float32,bfloat16}` (default auto, `precision.resolve_generator`).

    Args:
        parser: the tool's parser.
        scope: what the flag applies to, put before the help text.
        note: added after the default in the help text.
    """
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help=f"{scope}compute in bfloat16 (a cast copy of the weights) or float32; auto: "
        "bfloat16 where the CPU (AVX512_BF16, AMX) or GPU runs it natively and the output "
        f"stays within 40 dB PSNR of float32 (default: auto{note})",
    )
