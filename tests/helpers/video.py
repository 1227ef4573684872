"""Short test videos made with PyAV (rainy scenes), a model with the Generator's contract."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

#: Display durations (ms) cycled through by a variable-frame-rate video.
VFR_STEPS_MS = (30, 50, 20, 70)


def scene(index: int, height: int, width: int) -> np.ndarray:
    """Frame `index` of a camera panning over a photo, with raindrops rendered on it: uint8 RGB."""
    import skimage.data
    from PIL import Image

    from tf_deraindrop.synthetic.classic import render_raindrops

    photo = skimage.data.astronaut()
    base = np.asarray(Image.fromarray(photo).resize((width + 48, height + 24)))
    x, y = index % 48, (index // 2) % 24
    clean = base[y : y + height, x : x + width].astype(np.float32) / 255.0
    # The same seed every frame: drops stay on the windscreen while the scene moves.
    rainy, _ = render_raindrops(clean, seed=0, coverage=0.15)
    return (rainy * 255 + 0.5).astype(np.uint8)


def make_video(
    path,
    frames: int = 24,
    size: tuple[int, int] = (96, 128),
    rate: int = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: bool = False,
    vfr: bool = False,
    rotation: int | None = None,
    container: str | None = None,
    options: dict | None = None,
) -> list[np.ndarray]:
    """Writes a test video; returns its RGB frames (before encoding).

    Args:
        path: the file; its extension picks the container unless `container`.
        frames, size, rate: frame count, `(height, width)`, nominal frame rate.
        codec, pix_fmt: video encoder and its pixel format.
        audio: add a stereo AAC track (a 440 Hz tone) as long as the video.
        vfr: variable frame rate: durations cycle through `VFR_STEPS_MS`.
        rotation: display rotation metadata in degrees.
        container: FFmpeg format name; options: container options.
    """
    import av

    height, width = size
    images = [scene(i, height, width) for i in range(frames)]
    out = av.open(str(path), "w", format=container, options=options or {})
    video = out.add_stream(codec, rate=rate)
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    time_base = Fraction(1, 1000) if vfr else Fraction(1, rate)
    video.codec_context.time_base = time_base
    if rotation:
        video.set_display_rotation(rotation)
    sound = out.add_stream("aac", rate=48000) if audio else None
    pts = 0
    for i, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        step = VFR_STEPS_MS[i % len(VFR_STEPS_MS)] if vfr else 1
        frame.duration = step
        out.mux(video.encode(frame))
        pts += step
    out.mux(video.encode())
    if sound is not None:
        rate_hz = 48000
        total = int(rate_hz * float(pts * time_base))
        for start in range(0, total, 1024):
            count = min(1024, total - start)
            tone = np.sin(2 * np.pi * 440 * np.arange(start, start + count) / rate_hz) * 0.3
            stereo = np.repeat(tone.astype(np.float32)[None], 2, 0).reshape(1, -1)
            chunk = av.AudioFrame.from_ndarray(stereo, format="flt", layout="stereo")
            chunk.sample_rate, chunk.pts = rate_hz, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())
    out.close()
    return images


def identity_model():
    """A Keras model with the Generator's call contract whose output is its input.

    For the tests of the video plumbing (timestamps, audio, sizes, bad input),
    where the model's work does not matter and a real generator would only
    cost time. The attention map is a fixed function of the image.
    """
    import keras

    image = keras.Input((None, None, 3))
    attention = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=-1, keepdims=True))(image)
    return keras.Model(image, {"attention": [attention], "outputs": [image, image, image]})


def decode(path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame of a video as uint8 RGB, and its time in seconds."""
    from tf_deraindrop.video import iter_frames

    frames = list(iter_frames(path))
    return [f.image for f in frames], [f.time for f in frames]


def audio_packets(path) -> tuple[list[bytes], np.ndarray]:
    """The audio packets of a video: their bytes, and their times in seconds from its first frame.

    Relative to the first video frame, because a container may shift the
    whole file (Matroska makes the AAC priming packet's negative time 0).
    """
    import av

    from tf_deraindrop.video import probe

    start = probe(path).start
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size and p.pts is not None]
        times = np.array([float(p.pts * p.time_base) - start for p in packets])
        return [bytes(p) for p in packets], times


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def same_audio(ours, source) -> None:
    """The same audio packets, byte for byte, at the same times (to Matroska's 1 ms)."""
    packets, times = audio_packets(ours)
    expected, expected_times = audio_packets(source)
    assert packets == expected
    np.testing.assert_allclose(times, expected_times, atol=1.5e-3)


def hidden_files(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".")]
