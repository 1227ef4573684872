"""`deraindrop benchmark`: the command line of `tf_deraindrop.export.benchmark`."""

from __future__ import annotations

import argparse
import os
import sys

from tf_deraindrop.export.benchmark import __doc__ as _DOC  # noqa: E402
from tf_deraindrop.export.benchmark import _worker_main, benchmark, table


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return _worker_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="deraindrop benchmark",
        description=_DOC.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a .tflite written by deraindrop export")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (2)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (2)")
    parser.add_argument("--weights", help="the Keras generator to compare (.keras or gen.pkl)")
    parser.add_argument("--no-keras", action="store_true", help="time the .tflite only")
    parser.add_argument(
        "--low-memory",
        action="store_true",
        help="also time LiteDerainer(low_memory=True): XNNPACK's transient indirection buffers",
    )
    args = parser.parse_args(argv)
    from tf_deraindrop.inference.tflite import LiteModelError, load_interpreter

    try:
        if args.threads < 1 or args.runs < 1 or args.warmup < 0:
            raise ValueError("--threads and --runs must be at least 1, --warmup at least 0")
        if args.weights and not os.path.isfile(args.weights):
            raise ValueError(f"--weights {args.weights}: no such file")
        load_interpreter(args.model, xnnpack=False)  # a clear error before any subprocess
        results = benchmark(
            args.model,
            args.threads,
            args.runs,
            args.warmup,
            args.weights,
            not args.no_keras,
            args.low_memory,
        )
    except (LiteModelError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from tf_deraindrop.inference.cpu import cpu_description

    print(f"CPU: {cpu_description()}")  # the machine behind the figures
    print(f"{args.threads} threads, {args.warmup} warm-up + {args.runs} timed runs each\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
