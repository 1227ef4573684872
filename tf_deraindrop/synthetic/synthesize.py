"""Synthetic rainy/clean pairs in the layout of the authors' Raindrop dataset.

Writes `data/<k>_rain.png`, `gt/<k>_clean.png` and `mask/<k>_mask.png`
(0 or 255) under an output folder, rendering drops with
`tf_deraindrop.synthetic.render.render_raindrops` (the physically based
renderer, camera set-up `preset`) over clean photos: a folder of the user's
own, or by default the real photos that ship with scikit-image. The masks
follow that renderer's rule: where the defocused drop coverage is visible.

Usage:
    deraindrop synthesize --out-dir data/synthetic --pairs-per-image 4 --seed 0
    deraindrop synthesize --clean-dir my_photos --out-dir O --size 480 720
    deraindrop synthesize --clean-dir my_photos --out-dir O --preset dashcam
    deraindrop synthesize --clean-dir dry_drives/ --every 10 --out-dir O --size 480 720

`--clean-dir` may hold videos too (dry-weather dashcam footage, say), or be
one: a frame every `--every` seconds of each is a clean photo (the first
frame at or after each multiple, named `<video>_<time>ms`).

Each pair's drops depend only on `(seed, image index, pair index)`, so a run
is reproducible and a larger `--pairs-per-image` keeps the first pairs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tf_deraindrop.synthetic.presets import DEFAULT_PRESET
from tf_deraindrop.synthetic.render import MIN_SIDE, check_params, render_raindrops
from tf_deraindrop.utils.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    read_image,
    to_float_rgb,
    to_uint8,
    write_image,
)
from tf_deraindrop.video import VideoError

# Colour photographs bundled with scikit-image (no download needed).
_SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")


class SynthesisError(ValueError):
    """Bad input to the synthesis; the message names the file or folder."""


#: Default of `--every`: seconds between the frames taken from a video.
DEFAULT_EVERY = 5.0


class VideoFrameRef:
    """A frame of a video, decoded when read: the first frame at or after `time` seconds.

    Example:
        >>> VideoFrameRef("drive.mp4", 10.0).read().shape  # doctest: +SKIP
        (720, 1280, 3)
    """

    def __init__(self, path: str | os.PathLike, time: float):
        self.path, self.time = Path(path), float(time)

    def __str__(self) -> str:
        return f"{self.path} at {self.time:.2f} s"

    def read(self) -> np.ndarray:
        """The frame as float32 RGB in [0, 1].

        Raises:
            VideoError: the video is unreadable or has no frame there.
        """
        from tf_deraindrop.video import iter_frames

        frame = next(iter_frames(self.path, start=self.time), None)
        if frame is None:
            raise VideoError(f"{self}: no frame decodes there", str(self.path))
        return to_float_rgb(frame.image)


def video_frames(path: str | os.PathLike, every: float = DEFAULT_EVERY) -> list[tuple[str, object]]:
    """`(name, VideoFrameRef)` for a frame every `every` seconds of a video.

    Raises:
        VideoError: not a usable video (the message names it).
    """
    from tf_deraindrop.video import iter_frames, probe
    from tf_deraindrop.video.frames import frame_name

    if not every > 0:
        raise SynthesisError(f"--every {every}: must be more than 0 seconds")
    path = Path(path)
    info = probe(path)
    if info.duration is not None:
        # The last frame starts a frame's duration before the end.
        last = info.duration - (1.0 / float(info.rate) if info.rate else 0.0)
        times = [k * every for k in range(int(max(0.0, last) // every) + 1)]
    else:  # no duration in the header: find the frames by decoding once
        times = [frame.time for frame in iter_frames(path, every=every)]
    return [(frame_name(path.stem, t, ""), VideoFrameRef(path, t)) for t in times]


def clean_sources(
    directory: str | os.PathLike, every: float = DEFAULT_EVERY
) -> tuple[list[tuple[str, object]], list[tuple[Path, str]]]:
    """The clean photos of a folder (or one video): images, and frames of its videos.

    Returns:
        `(sources, skipped)`: `(name, Path or VideoFrameRef)` in file-name
        order, and `(path, reason)` for the files that are neither.

    Raises:
        SynthesisError: the folder does not exist.
    """
    if Path(directory).is_file():
        try:
            return video_frames(directory, every), []
        except VideoError as err:
            raise SynthesisError(str(err)) from err
    images, others = list_images(directory)
    sources = [(p.stem, p) for p in images]
    skipped = []
    from tf_deraindrop.video import VIDEO_SUFFIXES

    for path in others:
        try:
            sources += video_frames(path, every)
        except VideoError as err:
            # A file named as a video says what is wrong with it; others are just not photos.
            video = path.suffix.lower() in VIDEO_SUFFIXES
            skipped.append((path, str(err) if video else "not an image or a video file"))
    order = {p: i for i, p in enumerate(sorted(images + others))}
    sources.sort(key=lambda item: order[getattr(item[1], "path", item[1])])
    return sources, skipped


def default_clean_images() -> list[tuple[str, np.ndarray]]:
    """Real colour photos shipped with scikit-image, as float32 RGB in [0, 1].

    Returns:
        `[(name, image), ...]`: astronaut, coffee, chelsea, rocket and the left
        view of the stereo motorcycle (those present in the installed version).

    Example:
        >>> names = [name for name, _ in default_clean_images()]
    """
    import skimage.data

    images = []
    for name in _SKIMAGE_PHOTOS:
        try:
            if name == "motorcycle":
                array = skimage.data.stereo_motorcycle()[0]
            else:
                array = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - an image missing from this skimage is skipped
            continue
        images.append((name, to_float_rgb(array)))
    if not images:
        raise SynthesisError("no sample photos found in the installed scikit-image.")
    return images


def fit_to_size(
    image: np.ndarray, size: tuple[int, int], rng: np.random.Generator | None = None
) -> np.ndarray:
    """Resizes an image to cover `size = (H, W)` and crops it to exactly that.

    Args:
        image: float RGB in [0, 1].
        size: `(height, width)` of the result.
        rng: when given, zooms in by a random factor up to 1.5 and crops at a
            random place (variety between pairs); else a centred crop.

    Returns:
        float32 RGB `(H, W, 3)`.
    """
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    if rng is not None:
        scale *= float(rng.uniform(1.0, 1.5))
    new_h = max(height, int(np.ceil(h * scale)))
    new_w = max(width, int(np.ceil(w * scale)))
    if (new_h, new_w) != (h, w):
        resized = Image.fromarray(to_uint8(image)).resize((new_w, new_h), Image.LANCZOS)
        image = np.asarray(resized, dtype=np.float32) / 255.0
    if rng is not None:
        top = int(rng.integers(0, new_h - height + 1))
        left = int(rng.integers(0, new_w - width + 1))
    else:
        top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width], dtype=np.float32)


def list_images(directory: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """Image files of a folder (sorted) and the other, non-image, files.

    Hidden files (names starting with a dot, such as unfinished temporary
    files) are ignored.

    Raises:
        SynthesisError: the folder does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SynthesisError(f"{directory}: no such folder")
    images, others = [], []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return images, others


def _as_sources(
    clean_images: str | os.PathLike | Iterable | None, every: float = DEFAULT_EVERY
) -> list[tuple[str, object]]:
    """`(name, array, path or VideoFrameRef)` for every clean image input form."""
    if clean_images is None:
        return list(default_clean_images())
    if isinstance(clean_images, (str, os.PathLike)):
        sources, _ = clean_sources(clean_images, every)
        if not sources:
            raise SynthesisError(f"{clean_images}: no image or video files in this folder")
        return sources
    sources = []
    for i, item in enumerate(clean_images):
        if isinstance(item, (str, os.PathLike)):
            sources.append((Path(item).stem, Path(item)))
        elif isinstance(item, tuple) and len(item) == 2:
            sources.append((str(item[0]), item[1]))
        else:
            sources.append((f"image{i}", item))
    if not sources:
        raise SynthesisError("no clean images given")
    return sources


def synthesize_dataset(
    out_dir: str | os.PathLike,
    clean_images: str | os.PathLike | Sequence | None = None,
    pairs_per_image: int = 4,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    progress: bool = True,
    start_index: int = 0,
    on_error: str = "raise",
    every: float = DEFAULT_EVERY,
    preset: str = DEFAULT_PRESET,
    **params,
) -> int:
    """Writes synthetic pairs in the Raindrop layout.

    Args:
        out_dir: output folder; `data/`, `gt/` and `mask/` are created in it.
        clean_images: None for `default_clean_images()`; a folder of images
            and videos, or a video; or a list of paths, arrays, `(name, array)`
            or `(name, VideoFrameRef)` tuples.
        pairs_per_image: rainy versions rendered per clean image.
        seed: base seed; pair `j` of image `i` uses the seed `(seed, i, j)`.
        size: `(H, W)` to resize and crop every clean photo to first (with a
            random zoom and crop per pair), or None to keep each photo's size.
        progress: show a tqdm progress bar.
        start_index: number `k` of the first pair.
        on_error: `"raise"` to stop at the first bad image, `"skip"` to print a
            message naming it on stderr and go on.
        every: seconds between the frames taken from each video of a folder.
        preset: the camera/glass set-up of `render_raindrops`, one of
            `tf_deraindrop.synthetic.PRESETS`.
        **params: overrides of the preset's values, passed to `render_raindrops`.

    Returns:
        The number of pairs written.

    Raises:
        SynthesisError: a clean image is unreadable or too small (the message
            names it), or there are no clean images.
        ValueError: an unknown preset or a parameter out of its range.
        TypeError: an unknown parameter name.

    Example:
        >>> synthesize_dataset("synthetic", pairs_per_image=2, size=(192, 256))
    """
    if pairs_per_image < 1:
        raise SynthesisError(f"pairs_per_image must be at least 1, got {pairs_per_image}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if size is not None and min(size) < MIN_SIDE:
        raise SynthesisError(f"size {tuple(size)} is too small: both sides must be >= {MIN_SIDE}")
    check_params(preset, **params)  # before anything is created
    sources = _as_sources(clean_images, every)
    out_dir = Path(out_dir)
    for sub in ("data", "gt", "mask"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)

    written = 0
    index = start_index
    bar = tqdm(
        total=len(sources) * pairs_per_image,
        desc="synthesizing",
        unit="pair",
        disable=not progress,
    )
    try:
        for i, (name, source) in enumerate(sources):
            try:
                if isinstance(source, Path):
                    photo = read_image(source)
                elif isinstance(source, VideoFrameRef):
                    photo = source.read()
                else:
                    photo = to_float_rgb(source)
                if size is None and min(photo.shape[:2]) < MIN_SIDE:
                    raise SynthesisError(
                        f"{name if isinstance(source, np.ndarray) else source}: image of "
                        f"{photo.shape[1]} x {photo.shape[0]} px is too small for raindrops "
                        f"(the shorter side must be at least {MIN_SIDE} px)"
                    )
            except (ImageReadError, ValueError) as err:
                named = isinstance(err, (ImageReadError, SynthesisError)) or hasattr(
                    err, "is_image"
                )
                message = str(err) if named else f"{name}: {err}"
                if on_error == "raise":
                    raise SynthesisError(message) from err
                tqdm.write(f"skipped: {message}", file=sys.stderr)
                bar.update(pairs_per_image)
                continue
            for j in range(pairs_per_image):
                rng = np.random.default_rng([seed, i, j])
                clean = photo if size is None else fit_to_size(photo, size, rng)
                rainy, mask = render_raindrops(clean, seed=rng, preset=preset, **params)
                _write_pair(out_dir, index, mask.astype(np.uint8) * 255, rainy, clean)
                index += 1
                written += 1
                bar.update(1)
    finally:
        bar.close()
    return written


def _write_pair(out_dir: Path, index: int, mask, rainy, clean) -> None:
    """Writes one pair's files; when one fails (a full disk), removes those already written.

    The mask and the rainy image go first, the clean image last, so a pair
    whose gt file exists is complete.
    """
    written = []
    try:
        for folder, name, image in (
            ("mask", "mask", mask),
            ("data", "rain", rainy),
            ("gt", "clean", clean),
        ):
            path = out_dir / folder / f"{index}_{name}.png"
            write_image(path, image)
            written.append(path)
    except OSError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
