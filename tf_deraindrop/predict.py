"""Remove raindrops from image files or folders of images.

Every input is derained at its own size (`tf_deraindrop.derain` pads to a
multiple of 4 by reflection and crops back). Outputs are PNG files named
after the inputs (`photo.jpg` -> `DIR/photo.png`); with `--save-attention`
the final attention map `A_N` is saved beside it as a heat map
(`DIR/photo_attention.png`, black for 0 through red to pale yellow for 1).

Usage:
    python -m tf_deraindrop.predict --weights generator.keras rainy.jpg more/ --output derained/
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np

# Anchors of the heat map (value, R, G, B): black, purple, red, orange, pale
# yellow. Monotonic in brightness, so it reads in gray print too.
_HEAT_ANCHORS = np.array(
    [
        [0.00, 0, 0, 4],
        [0.25, 80, 18, 123],
        [0.50, 182, 54, 84],
        [0.75, 251, 136, 25],
        [1.00, 252, 253, 191],
    ],
    dtype=np.float64,
)


class InputError(ValueError):
    """A missing input, an empty folder, or output names that collide."""


def attention_heatmap(attention: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """An attention map `(H, W)` as a uint8 RGB heat map `(H, W, 3)`.

    The map has no sigmoid (docs/architecture.md, section 2) and is trained towards the 0/1
    mask, so values are shown on the fixed scale `[vmin, vmax]` and clipped,
    which keeps maps of different images comparable.

    Example:
        >>> attention_heatmap(np.array([[0.0, 1.0]])).shape
        (1, 2, 3)
    """
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim == 3 and attention.shape[-1] == 1:
        attention = attention[..., 0]
    if attention.ndim != 2:
        raise ValueError(f"Expected an attention map (H, W); got shape {attention.shape}.")
    t = np.clip((attention - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    t = np.nan_to_num(t, nan=0.0)
    channels = [np.interp(t, _HEAT_ANCHORS[:, 0], _HEAT_ANCHORS[:, c]) for c in (1, 2, 3)]
    return np.clip(np.round(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def collect_inputs(inputs: Sequence[str]) -> list[str]:
    """Image files from files and folders (a folder's images, sorted, not recursive).

    Raises:
        InputError: an input does not exist, or a folder holds no image.
    """
    from tf_deraindrop.images import IMAGE_SUFFIXES

    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, name)
                for name in os.listdir(item)
                if not name.startswith(".")
                and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
                and os.path.isfile(os.path.join(item, name))
            )
            if not found:
                raise InputError(f"{item}: no images in this folder ({', '.join(IMAGE_SUFFIXES)}).")
            files.extend(found)
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or folder.")
    return files


def output_names(files: Sequence[str], output_dir: str) -> list[str]:
    """`output_dir/<stem>.png` for every input, refusing collisions and overwriting inputs.

    Raises:
        InputError: two inputs would give the same output, or an output would
            replace an input.
    """
    outputs, seen = [], {}
    inputs = {os.path.realpath(f) for f in files}
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        out = os.path.join(output_dir, f"{stem}.png")
        key = os.path.realpath(out)
        if key in seen:
            raise InputError(
                f"{seen[key]} and {path} would both be written to {out}; "
                "run them separately or rename one."
            )
        if key in inputs:
            raise InputError(f"{out} would overwrite the input {path}; choose another --output.")
        seen[key] = path
        outputs.append(out)
    return outputs


def attention_name(output: str) -> str:
    """`DIR/photo.png` -> `DIR/photo_attention.png`."""
    base, _ = os.path.splitext(output)
    return f"{base}_attention.png"


def predict_files(
    generator,
    files: Sequence[str],
    outputs: Sequence[str],
    save_attention: bool = False,
    progress: bool = True,
) -> list[tuple[str, str]]:
    """Derains each file into its output; returns `(path, reason)` of the ones that failed.

    An unreadable image is reported and skipped so that one bad file does not
    lose the rest of a folder.
    """
    from tqdm import tqdm

    from tf_deraindrop.images import ImageReadError, read_image, write_image
    from tf_deraindrop.inference import derain

    failed = []
    for path, out in tqdm(
        list(zip(files, outputs)),
        desc="derain",
        unit="image",
        disable=not progress,
        file=sys.stderr,
    ):
        try:
            image = read_image(path)
        except ImageReadError as err:
            failed.append((path, str(err)))
            continue
        if save_attention:
            derained, attention = derain(generator, image, return_attention=True)
            write_image(attention_name(out), attention_heatmap(attention))
        else:
            derained = derain(generator, image)
        write_image(out, derained)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tf_deraindrop.predict",
        description="Remove raindrops from images (files or folders), any size.",
    )
    parser.add_argument(
        "--weights", required=True, help="generator: .keras, .weights.h5 or the authors' gen.pkl"
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--output", "-o", required=True, help="folder for the derained PNGs")
    parser.add_argument(
        "--save-attention",
        action="store_true",
        help="also save the final attention map as a heat map, <name>_attention.png",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    try:
        files = collect_inputs(args.inputs)
        outputs = output_names(files, args.output)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        print(f"error: --output {args.output} exists and is not a folder", file=sys.stderr)
        return 2
    from tf_deraindrop.weights import WeightsError, load_generator_weights

    try:
        generator = load_generator_weights(args.weights)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.makedirs(args.output, exist_ok=True)
    failed = predict_files(
        generator, files, outputs, args.save_attention, progress=not args.no_progress
    )
    for _path, reason in failed:
        print(f"error: {reason}", file=sys.stderr)
    done = len(files) - len(failed)
    print(f"Wrote {done} derained image{'s' if done != 1 else ''} to {args.output}")
    if failed:
        print(f"error: {len(failed)} of {len(files)} inputs could not be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
