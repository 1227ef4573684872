"""Video deraining: the whole pipeline against the model alone, memory over length, batching.

Three measures, each in its own process (a fresh peak RSS, threads set at start):

* `tflite`: at 480 x 720, an int8 export (and a float32 one) of a random
  generator run by `LiteDerainer` on N threads. The same decoded frames go
  through `derainer.derain` back to back (the model alone) and through
  `derain_video` (decode, model and H.264 encode in three threads), twice,
  alternating; the goal is a pipeline at most 10% slower than the model.
* `memory`: peak RSS (VmHWM) and RSS after 1,000 and after 5,000 frames of
  a 1280 x 720 video through `derain_video`. The model is an identity with
  the Generator's call contract (a Keras model returning its input): the
  generator itself would take hours for 5,000 720p frames here, and what is
  measured is whether the pipeline (queues, decoder, encoder, audio copy,
  Keras calls) grows with the video's length.
* `keras`: the random generator (float32) through `derain_video`, one frame
  per pass against batches of 4, at 480 x 720 and 240 x 360.

Other processes share the CPU, so the numbers to compare are those of one run.
Videos and models are written to `--work-dir` (a temporary folder, removed at
the end, unless given).

    python benchmarks/video/bench_video.py                    # all three, results/video_cpu.txt
    python benchmarks/video/bench_video.py --parts tflite --frames 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, ROOT  # noqa: E402


def vm(key: str) -> float:
    """VmHWM or VmRSS of this process, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def scene_frames(count: int, height: int, width: int, drops: bool = True):
    """Frames of a camera panning over a photo, with raindrops fixed on the windscreen."""
    import skimage.data
    from PIL import Image

    photo = skimage.data.astronaut()
    base = np.asarray(Image.fromarray(photo).resize((width + 256, height + 64))) / 255.0
    rainy_mask = None
    if drops:
        from tf_deraindrop.synthetic.classic import render_raindrops

        first = base[:height, :width].astype(np.float32)
        rainy, mask = render_raindrops(first, seed=0, coverage=0.15)
        rainy_mask = (rainy - first, mask[..., None])
    for i in range(count):
        x, y = (3 * i) % 256, i % 64
        frame = base[y : y + height, x : x + width]
        if rainy_mask is not None:
            # The drops' look taken from the first frame: cheap, and they stay put.
            frame = np.clip(frame + rainy_mask[0] * rainy_mask[1], 0, 1)
        yield (frame * 255 + 0.5).astype(np.uint8)


def write_video(path: str, frames, rate: int = 30, preset: str = "veryfast") -> None:
    """An H.264 MP4 of uint8 RGB frames, with a stereo AAC track as long as the video."""
    import av

    with av.open(path, "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"preset": preset, "crf": "20"})
        sound = out.add_stream("aac", rate=48000)
        count = 0
        for i, image in enumerate(frames):
            if i == 0:
                video.height, video.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
            count += 1
        out.mux(video.encode())
        total = int(48000 * count / rate)
        for start in range(0, total, 1024):
            n = min(1024, total - start)
            tone = np.sin(2 * np.pi * 440 * np.arange(start, start + n) / 48000) * 0.2
            chunk = av.AudioFrame.from_ndarray(
                np.repeat(tone.astype(np.float32)[None], 2, 0).reshape(1, -1),
                format="flt",
                layout="stereo",
            )
            chunk.sample_rate, chunk.pts = 48000, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())


def random_generator(seed: int = 0):
    import keras

    from tf_deraindrop.models import Generator

    keras.utils.set_random_seed(seed)
    generator = Generator()
    generator.build((None, None, None, 3))
    return generator


def _remove(*paths) -> None:
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


def part_tflite(args) -> dict:
    """int8 and float32 exports at 480 x 720: the model alone against the whole pipeline."""
    from tf_deraindrop.export import tflite
    from tf_deraindrop.export.int8.options import Int8Options
    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.utils.images import write_image
    from tf_deraindrop.video import derain_video, iter_frames

    height, width = args.size
    video = os.path.join(args.work_dir, f"drive_{height}x{width}_{args.frames}.mp4")
    if not os.path.exists(video):
        write_video(video, scene_frames(args.frames, height, width))
    frames = [f.image for f in iter_frames(video)]
    calibration = os.path.join(args.work_dir, "calibration")
    os.makedirs(calibration, exist_ok=True)
    for i in range(args.calibration_samples):
        write_image(os.path.join(calibration, f"{i}.png"), frames[i * len(frames) // 8])
    generator = None
    rows = []
    for mode in args.modes:
        model_path = os.path.join(args.work_dir, f"g_{mode}_{height}x{width}.tflite")
        if not os.path.exists(model_path):
            generator = generator or random_generator()
            start = time.perf_counter()
            tflite.export_tflite(
                generator,
                model_path,
                height,
                width,
                quantize=mode,
                calibration_dir=calibration if mode == "int8" else None,
                int8=Int8Options(samples=args.calibration_samples),
                verify_model=False,
                progress=False,
                log=lambda _: None,
            )
            print(f"exported {mode} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        derainer = LiteDerainer(model_path, threads=args.threads)
        derainer.derain(frames[0])  # warm-up: XNNPACK packs its weights on the first run
        count = args.frames if mode == "int8" else min(args.frames, args.float_frames)
        row = {"mode": mode, "frames": count, "model_s": [], "pipeline_s": [], "inside_s": []}
        source = video
        if count < len(frames):  # a shorter clip: the first `count` frames
            source = os.path.join(args.work_dir, f"first_{count}.mp4")
            if not os.path.exists(source):
                write_video(source, iter(frames[:count]))
        for _ in range(args.rounds):
            start = time.perf_counter()
            for frame in frames[:count]:
                derainer.derain(frame)
            row["model_s"].append(time.perf_counter() - start)
            out = os.path.join(args.work_dir, f"out_{mode}.mp4")
            _remove(out)
            result = derain_video(source, out, derainer, progress=False, log=lambda _: None)
            assert result.frames == count, (result.frames, count)
            row["pipeline_s"].append(result.seconds)
            row["inside_s"].append(result.model_seconds)
        rows.append(row)
    return {"part": "tflite", "size": [height, width], "threads": args.threads, "rows": rows}


def part_memory(args) -> dict:
    """Peak RSS after 1,000 and after 5,000 frames of a 720p video, identity model."""
    import keras

    from tf_deraindrop.video import FrameModel, derain_video, frame_model

    height, width = 720, 1280
    marks = sorted(args.memory_frames)
    video = os.path.join(args.work_dir, f"drive_720p_{marks[-1]}.mp4")
    if not os.path.exists(video):
        start = time.perf_counter()
        write_video(video, scene_frames(marks[-1], height, width), preset="ultrafast")
        print(f"wrote the 720p video in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    image = keras.Input((None, None, 3))
    attention = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=-1, keepdims=True))(image)
    identity = keras.Model(image, {"attention": [attention], "outputs": [image, image, image]})
    inner = frame_model(identity)
    samples = []

    class Counting(FrameModel):
        batch_size = inner.batch_size

        def __init__(self):
            self.frames = 0

        def __call__(self, images):
            out = inner(images)
            self.frames += len(images)
            if self.frames in marks:
                samples.append(
                    {"frames": self.frames, "hwm_mb": vm("VmHWM"), "rss_mb": vm("VmRSS")}
                )
            return out

    out = os.path.join(args.work_dir, "out_720p.mp4")
    _remove(out)
    result = derain_video(video, out, Counting(), progress=False, log=lambda _: None)
    return {
        "part": "memory",
        "frames": result.frames,
        "seconds": result.seconds,
        "samples": samples,
        "end_hwm_mb": vm("VmHWM"),
    }


def part_keras(args) -> dict:
    """The random generator through `derain_video`, batches of 1 and of 4."""
    from tf_deraindrop.video import derain_video

    generator = random_generator()
    rows = []
    for (height, width), count in ((args.size, args.keras_frames), ((240, 360), 16)):
        video = os.path.join(args.work_dir, f"keras_{height}x{width}_{count}.mp4")
        if not os.path.exists(video):
            write_video(video, scene_frames(count, height, width))
        generator.predict_on_batch(np.zeros((1, height, width, 3), np.float32))  # trace
        generator.predict_on_batch(np.zeros((4, height, width, 3), np.float32))
        for _ in range(args.rounds):
            for batch in (1, 4):
                out = os.path.join(args.work_dir, "out_keras.mp4")
                _remove(out)
                result = derain_video(
                    video,
                    out,
                    generator,
                    batch_size=batch,
                    max_pixels=None,
                    progress=False,
                    log=lambda _: None,
                )
                rows.append(
                    {
                        "size": [height, width],
                        "batch": batch,
                        "frames": result.frames,
                        "pipeline_s": result.seconds,
                        "inside_s": result.model_seconds,
                    }
                )
    return {"part": "keras", "rows": rows, "peak_mb": vm("VmHWM")}


PARTS = {"tflite": part_tflite, "memory": part_memory, "keras": part_keras}


def report(results: list[dict]) -> list[str]:
    lines = []
    for result in results:
        if result["part"] == "tflite":
            h, w = result["size"]
            lines.append(f"## TFLite at {h} x {w}, {result['threads']} threads (LiteDerainer)")
            lines.append(
                "mode     frames  model alone fps  pipeline fps  (its model calls fps)  "
                "pipeline over model"
            )
            for row in result["rows"]:
                for model_s, pipe_s, inside_s in zip(
                    row["model_s"], row["pipeline_s"], row["inside_s"]
                ):
                    n = row["frames"]
                    lines.append(
                        f"{row['mode']:<8} {n:>6}  {n / model_s:>15.3f}  {n / pipe_s:>12.3f}  "
                        f"{n / inside_s:>21.3f}  {pipe_s / model_s - 1:>+18.1%}"
                    )
        elif result["part"] == "memory":
            lines.append(
                f"## Memory, 1280 x 720, identity model with the Generator's contract, "
                f"H.264 out: {result['frames']} frames in {result['seconds']:.0f} s"
            )
            lines.append("after frames  peak RSS (VmHWM) MB  RSS MB")
            for s in result["samples"]:
                lines.append(f"{s['frames']:>12}  {s['hwm_mb']:>19.0f}  {s['rss_mb']:>6.0f}")
            if len(result["samples"]) >= 2:
                first, last = result["samples"][0], result["samples"][-1]
                lines.append(
                    f"peak RSS {last['frames']} vs {first['frames']} frames: "
                    f"{last['hwm_mb'] / first['hwm_mb'] - 1:+.1%}"
                )
        elif result["part"] == "keras":
            lines.append(
                "## Keras generator (random weights, float32) through derain_video, "
                f"peak RSS {result['peak_mb']:.0f} MB"
            )
            lines.append("size        batch  frames  pipeline fps  (its model calls fps)")
            for row in result["rows"]:
                h, w = row["size"]
                n = row["frames"]
                lines.append(
                    f"{h:>4} x {w:<4}  {row['batch']:>5}  {n:>6}  {n / row['pipeline_s']:>12.3f}"
                    f"  {n / row['inside_s']:>21.3f}"
                )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=list(PARTS))
    parser.add_argument("--size", type=int, nargs=2, default=(480, 720), metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=40, help="frames of the TFLite measure")
    parser.add_argument("--float-frames", type=int, default=12, help="frames for float32 TFLite")
    parser.add_argument("--keras-frames", type=int, default=8, help="Keras frames at --size")
    parser.add_argument("--modes", nargs="+", default=["int8", "none"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calibration-samples", type=int, default=4)
    parser.add_argument("--memory-frames", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--work-dir", help="kept videos and models (default: a temporary folder)")
    parser.add_argument("--out", default=os.path.join(RESULTS, "video_cpu.txt"))
    parser.add_argument("--part", help=argparse.SUPPRESS)  # one part, in a child process
    args = parser.parse_args()
    if args.part:
        os.makedirs(args.work_dir, exist_ok=True)
        print("RESULT " + json.dumps(PARTS[args.part](args)), flush=True)
        return 0

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_video_")
    results, began = [], time.time()
    try:
        for name in args.parts:
            child = [sys.executable, os.path.abspath(__file__), "--part", name, *sys.argv[1:]]
            child += ["--work-dir", work_dir]
            start = time.perf_counter()
            run = subprocess.run(child, capture_output=True, text=True, cwd=ROOT)
            lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
            if run.returncode or not lines:
                print(run.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"part {name} failed (exit {run.returncode})")
            result = json.loads(lines[-1][len("RESULT ") :])
            result["wall_s"] = time.perf_counter() - start
            results.append(result)
            print("\n".join(report([result])), flush=True)
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    header = [
        f"# python benchmarks/video/bench_video.py {' '.join(sys.argv[1:])}".rstrip(),
        f"# {time.strftime('%Y-%m-%d %H:%M', time.localtime(began))}, {os.cpu_count()} CPUs "
        "shared with other processes",
        "",
    ]
    text = "\n".join(header + report(results)) + "\n\nraw: " + json.dumps(results) + "\n"
    with open(args.out + ".partial", "w") as f:
        f.write(text)
    os.replace(args.out + ".partial", args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
