"""Remove raindrops from images and videos: files or folders, any size.

Every image is derained at its own size (`tf_deraindrop.derain` pads to a
multiple of 4 by reflection and crops back) into a PNG named after it
(`photo.jpg` -> `DIR/photo.png`). A video (recognised by what FFmpeg finds
in the file, not by its extension) is derained frame by frame into a video
of the same name (`drive.mov` -> `DIR/drive.mp4`, H.264; `--codec ffv1`:
lossless, `DIR/drive.mkv`) with the input's frames, timestamps, size,
rotation and audio (`tf_deraindrop.video`).

`--save-attention` adds the final attention map `A_N` as a heat map
(`photo_attention.png`, `drive_attention.mp4`: black for 0 through red to
pale yellow for 1, `tf_deraindrop.visualize`); `--compare` adds rainy |
derained side by side (`photo_compare.png`, `drive_compare.mp4`).

The weights are a `.keras` generator, `.weights.h5`, the authors' `gen.pkl`,
or a `.tflite` export (run by `LiteDerainer`, `--threads`).

Exit status: 0 done; 1 some input failed (unreadable image, truncated video
written as far as it decodes, full disk); 2 bad input or weights, found
before the model loads; 130 interrupted.

Usage:
    python -m tf_deraindrop.predict --weights generator.keras rainy.jpg drive.mp4 more/ -o out/
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from tf_deraindrop.visualize import attention_heatmap, side_by_side

__all__ = ["attention_heatmap", "main", "Job", "InputError", "collect_inputs", "plan_jobs"]


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
    """

    path: str
    info: object = None
    outputs: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def is_video(self) -> bool:
        return self.info is not None


def _classify(path: str, listed: bool):
    """`(path, None)` for an image, `(path, VideoInfo)` for a video, None to skip.

    Raises:
        InputError: an explicit file (or a folder's file with a video
            extension) that is neither an image nor a usable video.
    """
    from tf_deraindrop.images import IMAGE_SUFFIXES
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
    from tf_deraindrop.images import ImageReadError, ImageTooLargeError, open_image

    try:
        with open_image(path):
            pass
    except ImageTooLargeError as err:
        raise InputError(str(err)) from err
    except ImageReadError:
        pass
    return path


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
            found = []
            for name in sorted(os.listdir(item)):
                path = os.path.join(item, name)
                if name.startswith(".") or not os.path.isfile(path):
                    continue
                entry = _classify(path, listed=True)
                if entry is not None:
                    found.append(entry)
            if not found:
                raise InputError(f"{item}: no images or videos in this folder.")
            items.extend(found)
        elif os.path.isfile(item):
            items.append(_classify(item, listed=False))
        else:
            raise InputError(f"{item}: no such file or folder.")
    return items


def plan_jobs(
    items: Sequence[tuple[str, object]],
    output_dir: str,
    encoder=None,
    save_attention: bool = False,
    compare: bool = False,
    overwrite: bool = False,
    audio: bool = True,
) -> list[Job]:
    """Output names for every input, refusing collisions, inputs and existing files.

    Raises:
        InputError: two inputs would give the same output, an output would
            replace an input, or an output exists and `overwrite` is False.
    """
    from tf_deraindrop.video import plan_output

    jobs, seen = [], {}
    inputs = {os.path.realpath(path): path for path, _ in items}
    existing = []
    for path, info in items:
        stem = os.path.splitext(os.path.basename(path))[0]
        job = Job(path, info)
        extension = ".png"
        if info is not None:
            plan = plan_output(info, encoder, audio=audio)
            extension, job.notes = plan.extension, plan.notes
        job.outputs["output"] = os.path.join(output_dir, stem + extension)
        if save_attention:
            job.outputs["attention"] = os.path.join(output_dir, f"{stem}_attention{extension}")
        if compare:
            job.outputs["compare"] = os.path.join(output_dir, f"{stem}_compare{extension}")
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


def attention_name(output: str) -> str:
    """`DIR/photo.png` -> `DIR/photo_attention.png`."""
    base, ext = os.path.splitext(output)
    return f"{base}_attention{ext or '.png'}"


def _image_derainer(model, derain_options: dict):
    """`f(image, return_attention) -> derained or (derained, attention)` for any engine."""
    if hasattr(model, "derain") and not hasattr(model, "predict_on_batch"):
        return lambda image, attention: model.derain(image, return_attention=attention)
    from tf_deraindrop.inference import derain

    return lambda image, attention: derain(
        model, image, return_attention=attention, **derain_options
    )


def predict_files(
    generator,
    jobs: Sequence[Job],
    progress: bool = True,
    derain_options: dict | None = None,
) -> list[tuple[str, str]]:
    """Derains each image job into its outputs; returns `(path, reason)` of the ones that failed.

    An unreadable image is reported and skipped so that one bad file does not
    lose the rest of a folder.
    """
    from tqdm import tqdm

    from tf_deraindrop.images import ImageReadError, read_image, to_uint8, write_image

    run = _image_derainer(generator, derain_options or {})
    failed = []
    for job in tqdm(jobs, desc="derain", unit="image", disable=not progress, file=sys.stderr):
        try:
            image = read_image(job.path)
        except ImageReadError as err:
            failed.append((job.path, str(err)))
            continue
        if "attention" in job.outputs:
            derained, attention = run(image, True)
            write_image(job.outputs["attention"], attention_heatmap(attention))
        else:
            derained = run(image, False)
        if "compare" in job.outputs:
            write_image(job.outputs["compare"], side_by_side([to_uint8(image), derained]))
        write_image(job.outputs["output"], derained)
    return failed


def load_model(weights: str, threads: int | None = None, low_memory: bool = False):
    """A `LiteDerainer` for a `.tflite` file, else the generator (`load_generator_weights`).

    Raises:
        WeightsError: missing or unreadable weights (the message names the file).
    """
    from tf_deraindrop.weights import WeightsError

    if weights.lower().endswith(".tflite"):
        from tf_deraindrop.lite import LiteDerainer, LiteModelError

        try:
            return LiteDerainer(weights, threads=threads, low_memory=low_memory)
        except LiteModelError as err:
            raise WeightsError(str(err)) from err
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
    from tf_deraindrop.weights import load_generator_weights

    return load_generator_weights(weights)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tf_deraindrop.predict",
        description="Remove raindrops from images and videos (files or folders), any size.",
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="generator: .keras, .weights.h5, the authors' gen.pkl, or a .tflite export",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image or video files, or folders of them"
    )
    parser.add_argument("--output", "-o", required=True, help="folder for the derained files")
    parser.add_argument(
        "--save-attention",
        action="store_true",
        help="also save the final attention map as a heat map (<name>_attention.png / .mp4)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also save rainy | derained side by side (<name>_compare.png / .mp4)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace outputs that already exist"
    )
    parser.add_argument(
        "--threads", type=_positive, help="CPU threads of the model (TFLite or TensorFlow)"
    )
    parser.add_argument(
        "--low-memory",
        action="store_true",
        help="TFLite: XNNPACK's transient buffers (a fraction of the memory, a little slower)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="Keras generators: compute in bfloat16 (a cast copy of the weights) or float32; "
        "auto: bfloat16 where the CPU (AVX512_BF16, AMX) or GPU runs it natively and the "
        "output stays within 40 dB PSNR of float32 (default: auto)",
    )
    from tf_deraindrop.tiling import add_max_pixels_argument

    add_max_pixels_argument(parser)
    video = parser.add_argument_group("videos")
    video.add_argument(
        "--codec",
        help="video encoder: libx264 (default, MP4), libx265, libvpx-vp9, libsvtav1, "
        "ffv1 (lossless, MKV), or another FFmpeg encoder",
    )
    video.add_argument(
        "--crf",
        type=int,
        help="quality of libx264/libx265/libvpx-vp9/libsvtav1, lower is better "
        "(default: 18, 22, 30, 32)",
    )
    video.add_argument("--start", help="begin at this time: seconds or [HH:]MM:SS[.ms]")
    video.add_argument("--duration", help="derain this long: seconds or [HH:]MM:SS[.ms]")
    video.add_argument(
        "--batch", type=_positive, help="frames per pass of a Keras model (default: 1)"
    )
    video.add_argument("--no-audio", action="store_true", help="do not copy the audio streams")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _check_video_args(args, jobs: Sequence[Job]):
    """The encoder, start and duration, checked against every video; raises InputError."""
    from tf_deraindrop.video import VideoError, check_range, choose_encoder, parse_time

    try:
        start = parse_time(args.start, "--start")
        duration = parse_time(args.duration, "--duration")
        encoder = choose_encoder(args.codec)
    except ValueError as err:
        raise InputError(str(err)) from err
    if args.crf is not None:
        if encoder.crf is None:
            raise InputError(f"--crf: {encoder.name} has no CRF setting")
        if not 0 <= args.crf <= 63:
            raise InputError(f"--crf {args.crf}: must be between 0 and 63")
    for job in jobs:
        try:
            check_range(job.info, start, duration)
        except VideoError as err:
            raise InputError(str(err)) from err
    return encoder, start, duration


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    try:
        items = collect_inputs(args.inputs)
        has_video = any(info is not None for _, info in items)
        encoder = start = duration = None
        if has_video:
            encoder, start, duration = _check_video_args(
                args, [Job(p, i) for p, i in items if i is not None]
            )
        jobs = plan_jobs(
            items,
            args.output,
            encoder,
            save_attention=args.save_attention,
            compare=args.compare,
            overwrite=args.overwrite,
            audio=not args.no_audio,
        )
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        print(f"error: --output {args.output} exists and is not a folder", file=sys.stderr)
        return 2
    from tf_deraindrop.weights import WeightsError

    try:
        if args.precision == "bfloat16" and args.weights.lower().endswith(".tflite"):
            raise WeightsError(
                f"--precision bfloat16: {args.weights} is a .tflite export, which runs at the "
                "precision it was exported with"
            )
        model = load_model(args.weights, threads=args.threads, low_memory=args.low_memory)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if hasattr(model, "predict_on_batch"):
        from tf_deraindrop.precision import resolve_generator

        resolved = resolve_generator(model, args.precision)
        model = resolved.model
        print(f"Precision: {resolved}", flush=True)
    if args.save_attention and getattr(model, "has_attention", True) is False:
        print(
            f"error: {args.weights} has no attention output (--save-attention); "
            "export it with --with-attention",
            file=sys.stderr,
        )
        return 2
    os.makedirs(args.output, exist_ok=True)
    from tf_deraindrop.weights import remove_stale_partials

    remove_stale_partials(args.output)  # of an earlier run killed mid-write
    from tf_deraindrop.images import ImageWriteError
    from tf_deraindrop.tiling import max_pixels_kwargs

    derain_options: dict = max_pixels_kwargs(args.max_pixels)
    try:
        images = [job for job in jobs if not job.is_video]
        failed = predict_files(
            model, images, progress=not args.no_progress, derain_options=derain_options
        )
        for _path, reason in failed:
            print(f"error: {reason}", file=sys.stderr)
        videos = [job for job in jobs if job.is_video]
        video_failures = _predict_videos(
            model, videos, args, encoder, start, duration, derain_options
        )
    except KeyboardInterrupt:
        print("interrupted: unfinished outputs were removed", file=sys.stderr)
        return 130
    except ImageWriteError as err:
        # A full disk fails every later write too: stop here.
        print(f"error: {err}; nothing partial was left, later inputs not derained", file=sys.stderr)
        return 1
    done_images = len(images) - len(failed)
    done_videos = len(jobs) - len(images) - video_failures
    parts = []
    if images:
        parts.append(f"{done_images} derained image{'s' if done_images != 1 else ''}")
    if done_videos or video_failures:
        parts.append(f"{done_videos} derained video{'s' if done_videos != 1 else ''}")
    print(f"Wrote {' and '.join(parts) or 'nothing'} to {args.output}")
    if failed:
        print(f"error: {len(failed)} of {len(images)} images could not be read", file=sys.stderr)
    return 1 if failed or video_failures else 0


def _predict_videos(model, jobs, args, encoder, start, duration, derain_options) -> int:
    """Derains each video job; returns how many failed or were truncated."""
    from tf_deraindrop.video import (
        OutputExistsError,
        VideoError,
        VideoWriteError,
        derain_video,
    )

    failures = 0
    for job in jobs:
        outputs = job.outputs
        try:
            result = derain_video(
                job.path,
                outputs["output"],
                model,
                codec=encoder.name,
                crf=args.crf,
                compare=outputs.get("compare"),
                attention=outputs.get("attention"),
                start=start,
                duration=duration,
                overwrite=args.overwrite,
                batch_size=args.batch,
                progress=not args.no_progress,
                audio=not args.no_audio,
                **derain_options,
            )
        except VideoWriteError as err:
            print(f"error: {err}; the unfinished file was removed", file=sys.stderr)
            return failures + len(jobs) - jobs.index(job)  # the next would fail too
        except (VideoError, OutputExistsError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        print(result.summary())
        if result.truncated:
            failures += 1
    return failures


if __name__ == "__main__":
    sys.exit(main())
