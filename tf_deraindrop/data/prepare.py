"""Checks a dataset in the Raindrop layout and prepares it for training.

Usage:
    deraindrop prepare --data-dir raindrop/train
    deraindrop prepare --data-dir raindrop/train --tfrecords records/train
    deraindrop prepare --data-dir D --threshold 35 --reduce sum --close 5 --open 5

The layout is the authors': `<split>/data/<k>_rain.png` and
`<split>/gt/<k>_clean.png` (some copies use .jpg). For every pair this tool
checks that both files exist, are readable images and have the same size,
estimates the global shift between them by phase correlation, computes the
raindrop mask (docs/architecture.md, section 6) into `mask/<k>_mask.png`, writes a contact
sheet of a few pairs with their masks, and optionally sharded TFRecords.

Problems (missing partner, unreadable or non-image file, size mismatch,
image too small, misalignment above `--max-shift`, empty or missing folder)
are listed in a table at the end and make the exit status 1; pairs with a
problem get no mask and are left out of the TFRecords. Exit status 2 is a
usage error (such as a missing `--data-dir`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from tqdm import tqdm

from tf_deraindrop.data.masks import DEFAULT_THRESHOLD, compute_mask
from tf_deraindrop.data.pairs import LAYOUT, natural_key, scan_folder
from tf_deraindrop.utils.files import atomic_path
from tf_deraindrop.utils.images import ImageReadError, read_image, to_uint8, write_image


@dataclass
class Problem:
    """One problem found in a dataset."""

    kind: str
    path: str
    detail: str


@dataclass
class PairReport:
    """What was measured on one pair."""

    key: str
    rainy: Path | None = None
    clean: Path | None = None
    height: int = 0
    width: int = 0
    shift: tuple[float, float] | None = None
    coverage: float | None = None
    mask_path: Path | None = None
    mask_source: str = ""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.rainy is not None and self.clean is not None


@dataclass
class DatasetReport:
    """Everything `check_dataset` found."""

    data_dir: Path
    pairs: list[PairReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def all_problems(self) -> list[Problem]:
        return self.problems + [p for pair in self.pairs for p in pair.problems]

    @property
    def good_pairs(self) -> list[PairReport]:
        return [pair for pair in self.pairs if pair.ok]


def _scan_folder(folder: Path, role: str, report: DatasetReport) -> dict[str, Path]:
    """`{key: path}` of a data/ or gt/ folder; problems go into the report."""
    if not folder.is_dir():
        report.problems.append(Problem("missing folder", str(folder), "folder not found"))
        return {}
    scan = scan_folder(folder, role)
    for path in scan.not_images:
        report.problems.append(Problem("not an image", path, "not an image file (suffix)"))
    expected = f"<k>{LAYOUT[role][1]}"
    for path in scan.misnamed:
        report.problems.append(Problem("bad name", path, f"name should be {expected}.<ext>"))
    found: dict[str, Path] = {}
    for key, paths in scan.found.items():
        found[key] = Path(paths[0])
        for path in paths[1:]:
            report.problems.append(Problem("duplicate", path, f"same pair as {found[key].name}"))
    if scan.image_count == 0:
        report.problems.append(Problem("empty folder", str(folder), "no image files"))
    return found


def estimate_shift(
    rainy: np.ndarray, clean: np.ndarray, upsample: int = 10, refine: int = 2
) -> tuple[float, float]:
    """Global displacement `(dy, dx)` in pixels of the rainy image's content
    relative to the clean one, by phase correlation of the luma.

    A positive `dy` means the scene sits lower in the rainy image.

    Args:
        rainy, clean: float RGB images of the same size.
        upsample: sub-pixel precision is `1 / upsample` px.
        refine: re-estimations after moving the rainy image back by the
            estimate (the window biases a large shift towards zero).
    """
    from skimage.filters import window
    from skimage.registration import phase_cross_correlation

    weights = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    # A Hann window hides the image borders, whose wrap-around jump would
    # otherwise pull the correlation peak to zero shift. Plain (not
    # phase-normalized) correlation is the more robust to the drops: on
    # small synthetic pairs with 10 to 30 % drops and on the real pair it
    # was within 0.2 px (after refinement), where phase normalization was
    # off by up to 7 px.
    hann = window("hann", clean.shape[:2]).astype(np.float32)

    def prepared(luma: np.ndarray) -> np.ndarray:
        return (luma - float(luma.mean())) * hann

    reference = prepared(clean @ weights)
    moving = rainy @ weights
    total = np.zeros(2)
    for step in range(1 + max(0, refine)):
        shifted = moving if step == 0 else ndimage.shift(moving, -total, order=1, mode="nearest")
        shift, _, _ = phase_cross_correlation(
            reference, prepared(shifted), upsample_factor=upsample, normalization=None
        )
        total -= shift
        if np.abs(shift).max() < 1.0 / upsample:
            break
    # + 0.0 turns -0.0 into 0.0 for the report.
    return float(total[0]) + 0.0, float(total[1]) + 0.0


def check_dataset(
    data_dir: str | os.PathLike,
    write_masks: bool = True,
    mask_kwargs: dict | None = None,
    max_shift: float = 2.0,
    min_size: int = 224,
    progress: bool = True,
    mask_dir: str | os.PathLike | None = None,
    overwrite_masks: bool = False,
) -> DatasetReport:
    """Checks every pair of a Raindrop-layout folder and writes its masks.

    Args:
        data_dir: the split folder holding `data/` and `gt/`.
        write_masks: write `mask/<k>_mask.png` (0 or 255) for each good pair.
        mask_kwargs: `compute_mask` arguments (threshold, reduce, close_size,
            open_size).
        max_shift: largest tolerated global misalignment in pixels.
        min_size: smallest tolerated shorter side in pixels (training crops
            are 224 x 224).
        progress: show a tqdm progress bar.
        mask_dir: where masks go (default `<data_dir>/mask`).
        overwrite_masks: recompute masks that already exist there (by
            default they are kept: a synthetic dataset's masks are exact).

    Returns:
        A `DatasetReport`; `report.all_problems()` is empty for a clean dataset.

    Example:
        >>> report = check_dataset("raindrop/test_a")
        >>> [p.kind for p in report.all_problems()]
    """
    data_dir = Path(data_dir)
    report = DatasetReport(data_dir)
    rainy = _scan_folder(data_dir / LAYOUT["rainy"][0], "rainy", report)
    clean = _scan_folder(data_dir / LAYOUT["clean"][0], "clean", report)
    mask_dir = Path(mask_dir) if mask_dir is not None else data_dir / LAYOUT["mask"][0]
    for key in sorted(set(rainy) | set(clean), key=natural_key):
        pair = PairReport(key, rainy.get(key), clean.get(key))
        report.pairs.append(pair)
        if pair.clean is None:
            pair.problems.append(
                Problem("missing partner", str(pair.rainy), f"no gt/{key}_clean.* for it")
            )
        if pair.rainy is None:
            pair.problems.append(
                Problem("missing partner", str(pair.clean), f"no data/{key}_rain.* for it")
            )

    for pair in tqdm(report.pairs, desc="checking", unit="pair", disable=not progress):
        if not pair.problems:
            _check_pair(
                pair, mask_dir, write_masks, mask_kwargs, max_shift, min_size, overwrite_masks
            )
    return report


def _check_pair(pair, mask_dir, write_masks, mask_kwargs, max_shift, min_size, overwrite):
    """Reads one pair, measures its size and shift, keeps or computes its mask."""
    images = {}
    for role, path in (("rainy", pair.rainy), ("clean", pair.clean)):
        try:
            images[role] = read_image(path)
        except ImageReadError as err:
            pair.problems.append(Problem("unreadable", str(path), str(err).split(": ", 1)[-1]))
    if len(images) < 2:
        return
    rainy_img, clean_img = images["rainy"], images["clean"]
    pair.height, pair.width = rainy_img.shape[:2]
    if rainy_img.shape != clean_img.shape:
        (ch, cw), name = clean_img.shape[:2], pair.clean.name
        detail = f"{pair.width} x {pair.height}, but {name} is {cw} x {ch}"
        pair.problems.append(Problem("size mismatch", str(pair.rainy), detail))
        return
    if min(rainy_img.shape[:2]) < min_size:
        detail = f"{pair.width} x {pair.height}, shorter side below {min_size} px"
        pair.problems.append(Problem("too small", str(pair.rainy), detail))
        return
    pair.shift = estimate_shift(rainy_img, clean_img)
    if max(abs(pair.shift[0]), abs(pair.shift[1])) > max_shift:
        detail = (
            f"shifted by (dy, dx) = ({pair.shift[0]:+.1f}, {pair.shift[1]:+.1f}) px "
            f"against {pair.clean.name} (limit {max_shift:g})"
        )
        pair.problems.append(Problem("misaligned", str(pair.rainy), detail))
        return
    mask_path = mask_dir / f"{pair.key}{LAYOUT['mask'][1]}.png"
    if mask_path.is_file() and not overwrite:
        try:
            mask = read_mask(mask_path)
        except ImageReadError as err:
            pair.problems.append(Problem("unreadable", str(mask_path), str(err).split(": ", 1)[-1]))
            return
        if mask.shape != rainy_img.shape[:2]:
            detail = (
                f"{mask.shape[1]} x {mask.shape[0]}, but the pair is {pair.width} x {pair.height}"
            )
            pair.problems.append(Problem("size mismatch", str(mask_path), detail))
            return
        pair.mask_path, pair.mask_source = mask_path, "kept"
    else:
        mask = compute_mask(rainy_img, clean_img, **(mask_kwargs or {}))
        pair.mask_source = "computed"
        if write_masks:
            write_image(mask_path, mask.astype(np.uint8) * 255)
            pair.mask_path = mask_path
    pair.coverage = float(mask.mean())


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask image as bool `(H, W)`: True where it is bright (>= 50 %)."""
    return read_image(path).mean(axis=-1) >= 0.5


def _thumbnail(image: np.ndarray, width: int) -> Image.Image:
    pil = Image.fromarray(to_uint8(image) if image.dtype != np.uint8 else image)
    height = max(1, round(pil.height * width / pil.width))
    return pil.resize((width, height), Image.BILINEAR)


def write_contact_sheet(
    report: DatasetReport,
    path: str | os.PathLike,
    num_pairs: int = 4,
    tile_width: int = 240,
    mask_kwargs: dict | None = None,
) -> int:
    """PNG of a few good pairs, one per row: rainy, clean, mask overlaid in red.

    Pairs are taken evenly spread over the dataset. Returns the number shown.
    """
    good = report.good_pairs
    if not good or num_pairs < 1:
        return 0
    picks = [
        good[i]
        for i in np.linspace(0, len(good) - 1, min(num_pairs, len(good))).round().astype(int)
    ]
    picks = list({pair.key: pair for pair in picks}.values())
    label_h = 16
    rows = []
    for pair in picks:
        rainy, clean = read_image(pair.rainy), read_image(pair.clean)
        if pair.mask_path is not None:
            mask = read_mask(pair.mask_path)
        else:
            mask = compute_mask(rainy, clean, **(mask_kwargs or {}))
        overlay = rainy.copy()
        overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.asarray([1.0, 0.0, 0.0], dtype=np.float32)
        tiles = [_thumbnail(x, tile_width) for x in (rainy, clean, overlay)]
        row = Image.new("RGB", (3 * tile_width, tiles[0].height + label_h), "white")
        for i, tile in enumerate(tiles):
            row.paste(tile, (i * tile_width, label_h))
        shift = f"shift ({pair.shift[0]:+.1f}, {pair.shift[1]:+.1f}) px" if pair.shift else ""
        coverage = 100 * float(mask.mean())
        text = f"{pair.key}: rainy | clean | mask {coverage:.1f} %  {shift}"
        ImageDraw.Draw(row).text((4, 2), text, fill="black")
        rows.append(row)
    sheet = Image.new("RGB", (3 * tile_width, sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height
    write_image(path, np.asarray(sheet))
    return len(picks)


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def write_report_csv(report: DatasetReport, path: str | os.PathLike) -> None:
    """Per-pair CSV: key, files, size, shift, mask coverage, problems (atomic)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "key",
                "rainy",
                "clean",
                "height",
                "width",
                "shift_y",
                "shift_x",
                "coverage",
                "problems",
            ]
        )
        for pair in report.pairs:
            writer.writerow(
                [
                    pair.key,
                    pair.rainy or "",
                    pair.clean or "",
                    pair.height or "",
                    pair.width or "",
                    "" if pair.shift is None else f"{pair.shift[0]:.2f}",
                    "" if pair.shift is None else f"{pair.shift[1]:.2f}",
                    "" if pair.coverage is None else f"{pair.coverage:.4f}",
                    "; ".join(p.kind for p in pair.problems),
                ]
            )


#: The numeric options: flag, type, default, help.
_NUMBERS = (
    (
        "--threshold",
        float,
        round(DEFAULT_THRESHOLD * 255.0, 6),
        "mask threshold on the 0..255 scale (default %(default)g; "
        "the TF port's recipe: 35 with --reduce sum --close 5 --open 5)",
    ),
    ("--close", int, 0, "size of a square morphological closing of the mask (default 0: none)"),
    ("--open", int, 0, "size of a square morphological opening after it (default 0: none)"),
    ("--max-shift", float, 2.0, "largest tolerated misalignment in px (default 2)"),
    ("--min-size", int, 224, "smallest tolerated shorter side in px (default 224)"),
    ("--contact-pairs", int, 4, "pairs on the contact sheet (default 4; 0: none)"),
    ("--num-shards", int, 4, "TFRecord shards (default 4)"),
)
