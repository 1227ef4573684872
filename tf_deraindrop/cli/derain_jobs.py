"""Deraining planned jobs (`tf_deraindrop.cli.jobs`): each image's files, each video.

The derainer comes from `tf_deraindrop.inference.loading.load_derainer` (a
Keras generator or a `.tflite` export); both write the same outputs. One bad input is
reported and skipped so that it does not lose the rest of a folder; a write
error (a full disk) stops the run, since every later write would fail too.

Example:
    >>> derainer = load_derainer("generator.keras")  # doctest: +SKIP
    >>> failed = predict_files(derainer, image_jobs)  # doctest: +SKIP
    >>> failures = predict_videos(derainer, video_jobs, {"codec": "libx264"})  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tf_deraindrop.cli.jobs import Job


def predict_files(derainer, jobs: Sequence[Job], progress: bool = True) -> list[tuple[str, str]]:
    """Derains each image job into its outputs; returns `(path, reason)` of the ones that failed.

    An unreadable image is reported and skipped so that one bad file does not
    lose the rest of a folder.

    Raises:
        ImageWriteError: an output could not be written (nothing partial is left).
    """
    from tqdm import tqdm

    from tf_deraindrop.utils.images import ImageReadError, read_image, to_uint8, write_image
    from tf_deraindrop.utils.visualize import attention_heatmap, side_by_side

    failed = []
    bar = tqdm(jobs, desc="derain", unit="image", disable=not (progress and jobs), file=sys.stderr)
    for job in bar:
        try:
            image = read_image(job.path)
        except ImageReadError as err:
            failed.append((job.path, str(err)))
            continue
        if "attention" in job.outputs:
            derained, attention = derainer.derain(image, return_attention=True)
            write_image(job.outputs["attention"], attention_heatmap(attention))
        else:
            derained = derainer.derain(image)
        if "compare" in job.outputs:
            write_image(job.outputs["compare"], side_by_side([to_uint8(image), derained]))
        write_image(job.outputs["output"], derained)
    return failed


def predict_videos(model, jobs: Sequence[Job], options: dict) -> int:
    """Derains each video job with `derain_video(..., **options)`; returns how many failed.

    A truncated video (written as far as it decodes) counts as failed. After
    a write error the remaining videos are not tried and count as failed.

    Args:
        model: a derainer (`load_derainer`), a Keras generator or a `LiteDerainer`.
        jobs: the video jobs.
        options: `tf_deraindrop.video.derain_video` keyword arguments other
            than the paths (`codec`, `crf`, `start`, `overwrite`, ...).
    """
    from tf_deraindrop.video import OutputExistsError, VideoError, VideoWriteError, derain_video

    failures = 0
    for index, job in enumerate(jobs):
        outputs = job.outputs
        if getattr(model, "carry_state", False):
            model.reset()  # each video starts from the zero ConvLSTM state
        try:
            result = derain_video(
                job.path,
                outputs["output"],
                model,
                compare=outputs.get("compare"),
                attention=outputs.get("attention"),
                plan=job.plan,
                **options,
            )
        except VideoWriteError as err:
            print(f"error: {err}; the unfinished file was removed", file=sys.stderr)
            return failures + len(jobs) - index  # the next would fail too
        except (VideoError, OutputExistsError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        print(result.summary())
        if result.truncated:
            failures += 1
    return failures
