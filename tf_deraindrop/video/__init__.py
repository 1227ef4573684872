"""Dashcam video in, derained video out: reading, deraining and writing videos with PyAV.

`derain_video` derains a video file into another with a Keras generator (or
any model with its call contract) or a `LiteDerainer`, keeping the frame
count, timestamps, size, rotation and audio; `iter_frames` gives the frames
as RGB arrays for a loop of your own, and `VideoWriter` writes frames back.

Example:
    >>> from tf_deraindrop.video import derain_video, iter_frames  # doctest: +SKIP
    >>> result = derain_video("drive.mp4", "clean.mp4", generator)  # doctest: +SKIP
    >>> for frame in iter_frames("drive.mp4", every=5.0):  # doctest: +SKIP
    ...     print(frame.time, frame.image.shape)
"""

from tf_deraindrop.video.pipeline import (
    DEFAULT_BATCH,
    FrameModel,
    VideoResult,
    check_outputs,
    check_range,
    derain_video,
    frame_model,
)
from tf_deraindrop.video.reader import (
    VIDEO_SUFFIXES,
    DecodeStatus,
    Frame,
    VideoError,
    VideoInfo,
    is_video,
    iter_frames,
    parse_time,
    probe,
)
from tf_deraindrop.video.writer import (
    ENCODERS,
    Encoder,
    OutputExistsError,
    VideoWriteError,
    VideoWriter,
    choose_encoder,
    plan_output,
    video_encoders,
)

__all__ = [
    "DEFAULT_BATCH",
    "ENCODERS",
    "VIDEO_SUFFIXES",
    "DecodeStatus",
    "Encoder",
    "Frame",
    "FrameModel",
    "OutputExistsError",
    "VideoError",
    "VideoInfo",
    "VideoResult",
    "VideoWriteError",
    "VideoWriter",
    "check_outputs",
    "check_range",
    "choose_encoder",
    "derain_video",
    "frame_model",
    "is_video",
    "iter_frames",
    "parse_time",
    "plan_output",
    "probe",
    "video_encoders",
]
