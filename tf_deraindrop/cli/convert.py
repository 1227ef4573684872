"""Convert the authors' PyTorch generator (`gen.pkl`) to a Keras `.keras` file.

Usage:
    python -m tf_deraindrop.convert_official gen.pkl -o generator.keras
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tf_deraindrop.convert_official",
        description="Import the authors' released generator (gen.pkl) into Keras.",
    )
    parser.add_argument("checkpoint", help="the authors' gen.pkl (a PyTorch state_dict)")
    parser.add_argument("-o", "--output", default="generator.keras", help="output .keras file")
    args = parser.parse_args(argv)
    if not args.output.endswith(".keras"):
        parser.error(f"--output must end in .keras, got {args.output!r}")

    from tf_deraindrop.official.checkpoint import CheckpointError, import_official_checkpoint

    try:
        generator = import_official_checkpoint(args.checkpoint)
    except (FileNotFoundError, CheckpointError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from tf_deraindrop.utils.files import atomic_path, remove_stale_partials

    # What a killed earlier run left beside the output goes first.
    remove_stale_partials(os.path.dirname(os.path.abspath(args.output)))
    try:
        # A full disk or a missing permission: name the file, leave no partial.
        with atomic_path(args.output) as tmp:
            generator.save(tmp)
    except (OSError, RuntimeError, ValueError) as err:
        reason = getattr(err, "strerror", None) or err
        print(f"error: could not write {args.output}: {reason}", file=sys.stderr)
        return 2
    print(
        f"Wrote {args.output}: {generator.count_params():,} parameters "
        f"(RGB input in [0, 1]; channels permuted from the authors' BGR)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
