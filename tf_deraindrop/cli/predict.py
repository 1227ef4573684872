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
pale yellow for 1, `tf_deraindrop.utils.visualize`); `--compare` adds rainy |
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
import contextlib
import os
import sys

from tf_deraindrop.cli.args import (
    add_max_pixels_argument,
    add_precision_argument,
    fail,
    max_pixels_kwargs,
    positive_int,
)
from tf_deraindrop.cli.derain_jobs import predict_files, predict_videos
from tf_deraindrop.cli.jobs import (
    InputError,
    Job,
    collect_inputs,
    plan_jobs,
    plan_videos,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tf_deraindrop.predict",
        description="Remove raindrops from images and videos (files or folders), any size.",
    )
    parser.add_argument(
        "--weights",
        help="generator: .keras, .weights.h5, the authors' gen.pkl, or a .tflite export "
        "(default: the built-in lite student, trained on synthetic raindrops only)",
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
    compare = "also save rainy | derained side by side (<name>_compare.png / .mp4)"
    parser.add_argument("--compare", action="store_true", help=compare)
    overwrite = "replace outputs that already exist"
    parser.add_argument("--overwrite", action="store_true", help=overwrite)
    threads = "CPU threads of the model (TFLite or TensorFlow)"
    parser.add_argument("--threads", type=positive_int, help=threads)
    parser.add_argument(
        "--low-memory",
        action="store_true",
        help="TFLite: XNNPACK's transient buffers (a fraction of the memory, a little slower)",
    )
    add_precision_argument(parser, scope="Keras generators: ")
    add_max_pixels_argument(parser)
    _add_video_arguments(parser.add_argument_group("videos"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _add_video_arguments(video) -> None:
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
    batch = "frames per pass of a Keras model (default: 1)"
    video.add_argument("--batch", type=positive_int, help=batch)
    video.add_argument("--no-audio", action="store_true", help="do not copy the audio streams")
    carry = (
        "a .tflite LiteGenerator export: carry the ConvLSTM state from frame to frame (one "
        "recurrent step a frame; videos of exactly the export size; images as without it)"
    )
    video.add_argument("--carry-state", action="store_true", help=carry)


def _plan(args) -> tuple[list[Job], dict]:
    """The jobs (each video probed and checked once) and the videos' `derain_video` options.

    Raises:
        InputError: a bad input, option or output name.
    """
    items = collect_inputs(args.inputs)
    plans = plan_videos(
        items, args.codec, args.crf, args.start, args.duration, audio=not args.no_audio
    )
    video_options = {
        "overwrite": args.overwrite,
        "batch_size": args.batch,
        "progress": not args.no_progress,
    }
    jobs = plan_jobs(
        items,
        args.output,
        plans,
        save_attention=args.save_attention,
        compare=args.compare,
        overwrite=args.overwrite,
    )
    return jobs, video_options


def _default_weights(args) -> None:
    """Without `--weights`: the built-in model, said so; raises WeightsError where there is none."""
    from tf_deraindrop.inference.loading import WeightsError
    from tf_deraindrop.weights import default_weights, describe_default

    if args.weights is not None:
        return
    args.weights = default_weights()
    if args.weights is None:
        raise WeightsError("--weights is required: this install has no built-in model")
    print(f"Model: {describe_default()}.", flush=True)


def _load(args):
    """The derainer for `--weights` at the precision asked (its engine printed); WeightsError."""
    from tf_deraindrop.inference.loading import WeightsError, load_derainer

    _default_weights(args)
    try:
        derainer = load_derainer(
            args.weights,
            precision=args.precision,
            threads=args.threads,
            low_memory=args.low_memory,
            **max_pixels_kwargs(args.max_pixels),
        )
    except WeightsError as err:
        if args.precision == "bfloat16" and args.weights.lower().endswith(".tflite"):
            raise WeightsError(f"--{err}") from err
        raise
    from tf_deraindrop.inference.cpu import fast_paths

    print(fast_paths(), flush=True)  # what this CPU makes fast (oneDNN, bfloat16, int8)
    print(f"Engine: {derainer.engine}", flush=True)
    if args.save_attention and not derainer.has_attention:
        raise WeightsError(
            f"{args.weights} has no attention output (--save-attention); "
            "export it with --with-attention"
        )
    return derainer


def _check_carry_state(args, model, jobs: list[Job]) -> None:
    """`--carry-state` needs a `stream` signature and videos of its size; raises WeightsError."""
    from tf_deraindrop.inference.loading import WeightsError

    if not args.carry_state:
        return
    if not getattr(model, "has_stream", False):
        raise WeightsError(
            f"--carry-state: {args.weights} is not a .tflite with a 'stream' signature; "
            "export a LiteGenerator with deraindrop export"
        )
    h, w = model.tile_size
    for job in jobs:
        if job.is_video and (job.info.height, job.info.width) != (h, w):
            raise WeightsError(
                f"--carry-state: {job.path} is {job.info.height}x{job.info.width}, the model "
                f"{h}x{w}; the state needs frames of the export size (deraindrop export --height "
                "--width), or drop --carry-state (tiles, any size)"
            )


def _derain(model, jobs: list[Job], args, video_options: dict) -> int:
    """Derains the images, then the videos; prints what was written; the exit status."""
    from tf_deraindrop.utils.images import ImageWriteError

    images = [job for job in jobs if not job.is_video]
    videos = [job for job in jobs if job.is_video]
    try:
        failed = predict_files(model, images, progress=not args.no_progress)
        for _path, reason in failed:
            print(f"error: {reason}", file=sys.stderr)
        if args.carry_state:  # videos only: the images went one by one
            model.carry_state = True
        video_failures = predict_videos(model, videos, video_options)
    except KeyboardInterrupt:
        print("interrupted: unfinished outputs were removed", file=sys.stderr)
        return 130
    except ImageWriteError as err:
        # A full disk fails every later write too: stop here.
        return fail(f"{err}; nothing partial was left, later inputs not derained", status=1)
    done_images = len(images) - len(failed)
    done_videos = len(videos) - video_failures
    parts = []
    if images:
        parts.append(f"{done_images} derained image{'s' if done_images != 1 else ''}")
    if done_videos or video_failures:
        parts.append(f"{done_videos} derained video{'s' if done_videos != 1 else ''}")
    print(f"Wrote {' and '.join(parts) or 'nothing'} to {args.output}")
    if failed:
        print(f"error: {len(failed)} of {len(images)} images could not be read", file=sys.stderr)
    return 1 if failed or video_failures else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        jobs, video_options = _plan(args)
    except InputError as err:
        return fail(err)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        return fail(f"--output {args.output} exists and is not a folder")
    from tf_deraindrop.utils.files import (
        FolderWriteError,
        ensure_writable_folder,
        remove_stale_partials,
    )

    made_output = not os.path.isdir(args.output)
    try:
        # Before the model loads: a folder that cannot be written fails at once.
        ensure_writable_folder(args.output, "--output ")
    except FolderWriteError as err:
        return fail(err)
    from tf_deraindrop.inference.loading import WeightsError

    try:
        model = _load(args)
        _check_carry_state(args, model, jobs)
    except WeightsError as err:
        if made_output:
            with contextlib.suppress(OSError):
                os.rmdir(args.output)  # made by the check above, still empty
        return fail(err)
    remove_stale_partials(args.output)  # of an earlier run killed mid-write
    return _derain(model, jobs, args, video_options)


if __name__ == "__main__":
    sys.exit(main())
