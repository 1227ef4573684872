"""The `deraindrop` command: one subcommand per job, each a module of this package.

Each subcommand's module is imported only when it runs, so that
`deraindrop --help` answers without loading TensorFlow.

Example:
    $ deraindrop --help
    $ deraindrop predict photo.jpg --weights gen.pkl
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A Python warning as the tools print it: the message, without the source line."""
    return f"warning: {message}\n"


# Every command's module is under this package, so each of them prints warnings so.
warnings.formatwarning = _format_warning

#: Subcommand -> (module under `tf_deraindrop.cli`, one line for `--help`).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train the Attentive GAN (a short demo without --data-dir)"),
    "predict": ("predict", "remove raindrops from photos and videos, files or folders"),
    "evaluate": ("evaluate", "PSNR/SSIM of a generator on rainy/clean pairs"),
    "distill": ("distill", "distil a small real-time student from a generator"),
    "convert": ("convert", "the authors' gen.pkl to a Keras .keras file"),
    "export": ("export", "export a generator to TFLite (LiteRT): float32, float16, int8"),
    "benchmark": ("benchmark", "latency and memory of a .tflite next to the Keras generator"),
    "prepare": ("prepare", "check and index a Raindrop-layout dataset, compute masks"),
    "synthesize": ("synthesize", "render synthetic raindrops over clean photos or video frames"),
    "frames": ("frames", "extract frames from a video as images"),
    "app": ("app", "a local web page that derains uploaded photos and videos"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: deraindrop <command> [options]",
        "",
        "Raindrop removal with the Attentive GAN (Qian et al., CVPR 2018).",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`deraindrop <command> --help` describes a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"deraindrop: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"tf_deraindrop.cli.{COMMANDS[name][0]}")
    return module.main(rest)
