"""`deraindrop app`: a local web page that derains uploaded photos and videos.

The page (`tf_deraindrop.app`) shows rainy | derained under a slider, the
attention heat map, the time and engine, and a download; a video comes back
with its audio, a progress bar and a Cancel button. It listens on 127.0.0.1
(this computer only) unless `--host` says otherwise. It needs the `app`
extra: `pip install -e ".[app]"`.

Exit status: 0 stopped (Ctrl-C); 2 no model, a missing file, or Gradio not installed.

Usage:
    deraindrop app --weights gen.pkl
    deraindrop app --models-dir models/ --port 8080
    python -m tf_deraindrop.app --weights model.tflite
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from tf_deraindrop.cli.args import (
    add_max_pixels_argument,
    add_precision_argument,
    fail,
    max_pixels_kwargs,
)


def _positive_mb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of MB above 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The `deraindrop app` parser."""
    parser = argparse.ArgumentParser(
        prog="deraindrop app",
        description="A local web page that removes raindrops from uploaded photos and videos.",
    )
    parser.add_argument(
        "--weights",
        help="generator offered first: .keras, .weights.h5, the authors' gen.pkl, or .tflite",
    )
    parser.add_argument(
        "--models-dir",
        help="a folder of generator files to choose from on the page (read on each page load)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this computer only; 0.0.0.0 "
        "lets anyone on the network use the app and its uploads)",
    )
    parser.add_argument("--port", type=int, default=7860, help="TCP port (default: 7860)")
    parser.add_argument(
        "--max-upload-mb",
        type=_positive_mb,
        default=200.0,
        metavar="MB",
        help="largest photo or video taken, in MB (default: 200)",
    )
    add_precision_argument(parser, scope="the page's first choice for Keras models: ")
    add_max_pixels_argument(parser)
    return parser


def check_models(weights: str | None, models_dir: str | None) -> list[str]:
    """The models the page can offer.

    Raises:
        ValueError: a missing file or folder, or no model at all (the message says what to pass).
    """
    from tf_deraindrop.app.handlers import NO_MODEL_MESSAGE, find_models

    if weights and not os.path.isfile(weights):
        raise ValueError(f"--weights {weights}: no such file")
    if models_dir and not os.path.isdir(models_dir):
        raise ValueError(f"--models-dir {models_dir}: no such folder")
    models = find_models(weights, models_dir)
    if not models:
        where = f" (--models-dir {models_dir} holds none)" if models_dir else ""
        raise ValueError(f"{NO_MODEL_MESSAGE}{where}")
    return models


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        models = check_models(args.weights, args.models_dir)
    except ValueError as err:
        return fail(err)
    # Found, not imported: Gradio reads its temporary folder when imported (server.launch).
    if importlib.util.find_spec("gradio") is None:
        return fail('the app needs Gradio: pip install -e ".[app]"')
    from tf_deraindrop.app.server import launch

    print(f"Models: {', '.join(models)}", flush=True)
    # Without --weights or --models-dir, the one model is `default_weights()`'s.
    weights = args.weights or (None if args.models_dir else models[0])
    launch(
        weights,
        args.models_dir,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        precision=args.precision,
        derain_options=max_pixels_kwargs(args.max_pixels),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
