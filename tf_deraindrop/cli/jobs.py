"""What a `predict` run will do: the images and videos it was given, and the files each becomes.

Everything here runs before the model loads, so that a missing input, an
empty folder, two inputs that would write the same file or an output that
exists already is reported at once (exit status 2) and nothing is written.
No TensorFlow: video probing goes through PyAV (`tf_deraindrop.video`).

Example:
    >>> items = collect_inputs(["rainy.jpg", "drive.mp4", "more/"])  # doctest: +SKIP
    >>> jobs = plan_jobs(items, "out", plan_videos(items), save_attention=True)  # doctest: +SKIP
    >>> jobs[0].outputs  # doctest: +SKIP
    {'output': 'out/rainy.png', 'attention': 'out/rainy_attention.png'}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field


class InputError(ValueError):
    """A missing input, an empty folder, output names that collide, or an existing output."""


@dataclass
class Job:
    """One input and what it becomes.

    Attributes:
        path: the input file.
        info: a `VideoInfo` for a video, None for an image.
        outputs: `"output"`, and `"attention"` / `"compare"` when asked, to paths.
        notes: what the video's output changes (container, pixel format).
        plan: a video's `VideoPlan` (probed and checked once), None for an image.
    """

    path: str
    info: object = None
    outputs: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    plan: object = None

    @property
    def is_video(self) -> bool:
        return self.info is not None


def _classify(path: str, listed: bool):
    """`(path, None)` for an image, `(path, VideoInfo)` for a video, None to skip.

    Raises:
        InputError: an explicit file (or a folder's file with a video
            extension) that is neither an image nor a usable video.
    """
    from tf_deraindrop.utils.images import IMAGE_SUFFIXES
    from tf_deraindrop.video import VIDEO_SUFFIXES, VideoError, probe

    suffix = os.path.splitext(path)[1].lower()
    if suffix in IMAGE_SUFFIXES:
        return _refuse_bomb(path), None
    try:
        return path, probe(path)
    except VideoError as err:
        if err.is_image:
            return _refuse_bomb(path), None
        if listed and suffix not in VIDEO_SUFFIXES:
            return None  # a folder's notes, sidecar files and the like
        raise InputError(str(err)) from err


def _refuse_bomb(path: str) -> str:
    """`path`, after checking from its header that it is not a decompression bomb.

    Raises:
        InputError: the image declares more than `images.MAX_IMAGE_PIXELS`.
            Other read errors wait for the image's turn (reported, skipped).
    """
    from tf_deraindrop.utils.images import ImageReadError, ImageTooLargeError, open_image

    try:
        with open_image(path):
            pass
    except ImageTooLargeError as err:
        raise InputError(str(err)) from err
    except ImageReadError:
        pass
    return path


def _folder_inputs(folder: str) -> list[tuple[str, object]]:
    """A folder's images and videos, sorted, not recursive; raises InputError if none."""
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        entry = _classify(path, listed=True)
        if entry is not None:
            found.append(entry)
    if not found:
        raise InputError(f"{folder}: no images or videos in this folder.")
    return found


def collect_inputs(inputs: Sequence[str]) -> list[tuple[str, object]]:
    """Images and videos from files and folders (a folder's, sorted, not recursive).

    Returns:
        `(path, None)` for each image and `(path, VideoInfo)` for each video.

    Raises:
        InputError: an input does not exist, a folder holds no image or video,
            or a file is not an image nor a video FFmpeg can read.
    """
    items: list[tuple[str, object]] = []
    for item in inputs:
        if os.path.isdir(item):
            items.extend(_folder_inputs(item))
        elif os.path.isfile(item):
            items.append(_classify(item, listed=False))
        else:
            raise InputError(f"{item}: no such file or folder.")
    return items


def _name_outputs(job: Job, output_dir: str, extension: str, save_attention: bool, compare: bool):
    stem = os.path.splitext(os.path.basename(job.path))[0]
    job.outputs["output"] = os.path.join(output_dir, stem + extension)
    if save_attention:
        job.outputs["attention"] = os.path.join(output_dir, f"{stem}_attention{extension}")
    if compare:
        job.outputs["compare"] = os.path.join(output_dir, f"{stem}_compare{extension}")


def plan_jobs(
    items: Sequence[tuple[str, object]],
    output_dir: str,
    plans: dict | None = None,
    save_attention: bool = False,
    compare: bool = False,
    overwrite: bool = False,
) -> list[Job]:
    """Output names for every input, refusing collisions, inputs and existing files.

    Args:
        items: `(path, VideoInfo or None)` from `collect_inputs`.
        output_dir: the output folder.
        plans: each video's `VideoPlan` by path (`plan_videos`).
        save_attention, compare: also name those outputs.
        overwrite: allow existing outputs.

    Raises:
        InputError: two inputs would give the same output, an output would
            replace an input, or an output exists and `overwrite` is False.
    """

    jobs, seen = [], {}
    inputs = {os.path.realpath(path): path for path, _ in items}
    existing = []
    for path, info in items:
        job = Job(path, info, plan=(plans or {}).get(path) if info is not None else None)
        extension = ".png"
        if job.plan is not None:
            extension, job.notes = job.plan.output.extension, job.plan.output.notes
        _name_outputs(job, output_dir, extension, save_attention, compare)
        for out in job.outputs.values():
            key = os.path.realpath(out)
            if key in seen:
                raise InputError(
                    f"{seen[key]} and {path} would both be written to {out}; "
                    "run them separately or rename one."
                )
            if key in inputs:
                raise InputError(
                    f"{out} would overwrite the input {inputs[key]}; choose another --output."
                )
            if os.path.lexists(out):
                existing.append(out)
            seen[key] = path
        jobs.append(job)
    if existing and not overwrite:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise InputError(
            f"{', '.join(existing[:3])}{more} already exist; pass --overwrite to replace them."
        )
    return jobs


def plan_videos(
    items: Sequence[tuple[str, object]],
    codec: str | None = None,
    crf: int | None = None,
    start: str | None = None,
    duration: str | None = None,
    audio: bool = True,
) -> dict:
    """Each video's `VideoPlan`: the encoder, CRF and time range checked against it once.

    Args:
        items: `(path, VideoInfo or None)` from `collect_inputs` (images are skipped).
        codec: `--codec` (None: the default encoder).
        crf: `--crf`, if given.
        start: `--start` text, seconds or `[HH:]MM:SS[.ms]`.
        duration: `--duration` text, in the same forms.
        audio: copy the audio streams.

    Raises:
        InputError: an unknown encoder, a CRF it has not or out of range, a
            time that does not parse, or a range outside a video.
    """
    from tf_deraindrop.video import VideoError, plan_video

    plans = {}
    for path, info in items:
        if info is None:
            continue
        try:
            plans[path] = plan_video(info, codec, crf, start, duration, audio)
        except (ValueError, VideoError) as err:
            raise InputError(str(err)) from err
    return plans
