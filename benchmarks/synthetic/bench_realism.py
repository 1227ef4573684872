"""How real do synthetic raindrops look? Statistics of real drops against rendered ones.

For every real rainy/clean pair (Raindrop layout: `data/N_rain.png`,
`gt/N_clean.png`) the drops are measured (`realism_stats`), then the old
renderer (`tf_deraindrop.synthetic.classic`) and the new one (`tf_deraindrop.synthetic`)
render drops on the same clean image for several seeds and are measured the
same way (the mask from the rainy-clean difference, never the renderer's).
The table gives the real value, its band (per-drop 10th-90th percentile, or
the real value widened 1.5x for image-level statistics) and the renderers'
mean [min, max] over the seeds; `ok` marks a new mean inside the band.

    python benchmarks/synthetic/bench_realism.py --plot
    python benchmarks/synthetic/bench_realism.py --preset dashcam --seeds 4
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from realism_stats import STATS, pair_stats, reference_band  # noqa: E402

from tf_deraindrop.synthetic.classic import render_raindrops as render_old  # noqa: E402
from tf_deraindrop.synthetic.render import render_raindrops as render_new  # noqa: E402
from tf_deraindrop.utils.images import read_image  # noqa: E402

DEFAULT_PAIRS = os.path.join("..", "shared", "data", "raindrop_pairs")


def find_pairs(pairs_dir: str) -> list[tuple[str, str]]:
    """`(rainy, clean)` paths of a folder in the Raindrop dataset's layout."""
    pairs = []
    for rainy in sorted(glob.glob(os.path.join(pairs_dir, "data", "*_rain.*"))):
        stem = os.path.basename(rainy).split("_rain")[0]
        clean = glob.glob(os.path.join(pairs_dir, "gt", f"{stem}_clean.*"))
        if clean:
            pairs.append((rainy, clean[0]))
    return pairs


def _summary(stats: list[dict], name: str) -> tuple[float, float, float]:
    values = np.array([float(s[name]) for s in stats])
    return float(np.nanmean(values)), float(np.nanmin(values)), float(np.nanmax(values))


def table(real: list[dict], old: list[dict], new: list[dict], preset: str) -> str:
    """The side-by-side table as text."""
    head = (
        f"{'statistic':<16}{'real':>9}{'real band':>18}{'old renderer':>26}"
        f"{'new (' + preset + ')':>30}  in band"
    )
    lines = [head, "-" * len(head)]
    for name, fmt in STATS.items():
        low, high = reference_band(real, name)
        real_mean = _summary(real, name)[0]
        cells = []
        for stats in (old, new):
            mean, lo, hi = _summary(stats, name)
            cells.append(f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]")
        inside = low <= _summary(new, name)[0] <= high
        band = f"{fmt.format(low)}..{fmt.format(high)}"
        lines.append(
            f"{name:<16}{fmt.format(real_mean):>9}{band:>18}{cells[0]:>26}"
            f"{cells[1]:>30}  {'ok' if inside else 'OUT'}"
        )
    return "\n".join(lines)


def _histogram(draw, box, series, colours, bins) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    counts = [np.histogram(values, bins=bins)[0] / max(len(values), 1) for values in series]
    top = max(max(c.max() for c in counts), 1e-6)
    width = (x1 - x0) / (len(bins) - 1)
    for k, (count, colour) in enumerate(zip(counts, colours)):
        for i, c in enumerate(count):
            left = x0 + i * width + k * width / len(series)
            bar_h = (y1 - y0 - 4) * c / top
            draw.rectangle((left, y1 - bar_h, left + width / len(series) - 1, y1), fill=colour)


def plot(path: str, real_img, examples: dict, series: dict) -> None:
    """Histograms (drop radii, per-drop brightening) and crops, drawn with PIL."""
    from PIL import Image, ImageDraw

    crop = (slice(240, 480), slice(0, 360))
    tiles = [("real", real_img)] + list(examples.items())
    canvas = Image.new("RGB", (360 * len(tiles), 240 + 300), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (name, image) in enumerate(tiles):
        tile = (np.clip(image[crop], 0, 1) * 255).astype(np.uint8)
        canvas.paste(Image.fromarray(tile), (360 * i, 0))
        draw.text((360 * i + 6, 6), name, fill=(255, 255, 0))
    colours = [(200, 40, 40), (120, 120, 120), (40, 90, 200)]
    _histogram(draw, (20, 270, 520, 520), series["radii"], colours, np.linspace(0, 0.3, 16))
    draw.text(
        (20, 250),
        "drop equivalent radius / short side (red real, grey old, blue new)",
        fill=(0, 0, 0),
    )
    _histogram(
        draw, (580, 270, 1060, 520), series["brightening"], colours, np.linspace(-0.15, 0.3, 16)
    )
    draw.text((580, 250), "per-drop brightening (Y)", fill=(0, 0, 0))
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pairs-dir",
        default=DEFAULT_PAIRS,
        help="real pairs in the Raindrop layout (relative: from the repo root)",
    )
    parser.add_argument("--seeds", type=int, default=8, help="renders per renderer")
    parser.add_argument("--preset", default="raindrop-dataset", help="new renderer's preset")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "realism_cpu.txt"))
    parser.add_argument(
        "--plot",
        nargs="?",
        const=os.path.join("benchmarks", "results", "realism_cpu.png"),
        default=None,
        help="write a PNG (histograms, crops)",
    )
    args = parser.parse_args(argv)
    pairs_dir = (
        args.pairs_dir if os.path.isabs(args.pairs_dir) else os.path.join(ROOT, args.pairs_dir)
    )
    pairs = find_pairs(pairs_dir)
    if not pairs:
        print(
            f"no real pairs (data/*_rain.png + gt/*_clean.png) under {args.pairs_dir}; "
            "pass --pairs-dir",
            file=sys.stderr,
        )
        return 2
    real, old, new, examples = [], [], [], {}
    for rainy_path, clean_path in pairs:
        rainy, clean = read_image(rainy_path), read_image(clean_path)
        real.append(pair_stats(rainy, clean))
        for seed in range(args.seeds):
            old_rainy, _ = render_old(clean, seed=seed)
            new_rainy, _ = render_new(clean, seed=seed, preset=args.preset)
            old.append(pair_stats(old_rainy, clean))
            new.append(pair_stats(new_rainy, clean))
            if seed < 2 and len(examples) < 4:
                examples[f"old seed {seed}"] = old_rainy
                examples[f"new seed {seed}"] = new_rainy
    text = (
        f"Raindrop realism: {len(pairs)} real pair(s), {args.seeds} seeds per renderer "
        f"on the same clean image(s); mask = tf_deraindrop.data.masks.compute_mask\n\n"
        + table(real, old, new, args.preset)
    )
    print(text)
    out = args.out if os.path.isabs(args.out) else os.path.join(ROOT, args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text + "\n")
    if args.plot:
        series = {
            "radii": [np.concatenate([s["radii"] for s in group]) for group in (real, old, new)],
            "brightening": [
                [v for s in group for v in s["per_drop"]["brightening"]]
                for group in (real, old, new)
            ],
        }
        plot_path = args.plot if os.path.isabs(args.plot) else os.path.join(ROOT, args.plot)
        plot(plot_path, read_image(pairs[0][0]), examples, series)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
