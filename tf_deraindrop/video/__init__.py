"""Dashcam video in, derained video out: reading, deraining and writing videos with PyAV.

`derain_video` derains a video file into another with a Keras generator (or
any model with its call contract) or a `LiteDerainer`, keeping the frame
count, timestamps, size, rotation, audio, subtitles and data tracks;
`iter_frames` gives the frames as RGB arrays for a loop of your own, and
`VideoWriter` writes frames back.

The modules, in the order a frame meets them: `probing` (what a file is),
`reader` (decoding), `models` (the model as a function of frames),
`stages` (the reader, model and writer threads), `encoders` and `writer`
(encoding, the temporary name), `passthrough` (audio, subtitle and data
streams copied as they are), `report` (the result and warnings) and
`pipeline` (`derain_video`, which ties them).

Example:
    >>> from tf_deraindrop.video import derain_video, iter_frames  # doctest: +SKIP
    >>> result = derain_video("drive.mp4", "clean.mp4", generator)  # doctest: +SKIP
    >>> for frame in iter_frames("drive.mp4", every=5.0):  # doctest: +SKIP
    ...     print(frame.time, frame.image.shape)
"""

from tf_deraindrop.video.encoders import ENCODERS, Encoder, choose_encoder, video_encoders
from tf_deraindrop.video.frame_model import DEFAULT_BATCH, FrameModel, frame_model
from tf_deraindrop.video.passthrough import plan_output
from tf_deraindrop.video.pipeline import check_outputs, derain_video
from tf_deraindrop.video.plan import VideoPlan, check_encoding, check_range, plan_video
from tf_deraindrop.video.probing import (
    VIDEO_SUFFIXES,
    VideoError,
    VideoInfo,
    is_video,
    parse_time,
    probe,
)
from tf_deraindrop.video.reader import DecodeStatus, Frame, iter_frames
from tf_deraindrop.video.report import VideoResult
from tf_deraindrop.video.writer import OutputExistsError, VideoWriteError, VideoWriter

__all__ = [
    "VideoPlan",
    "check_encoding",
    "plan_video",
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
