"""The `stream` signature of a LiteGenerator export: the ConvLSTM state carried across frames."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.test_lite_generator import _lite, _randomize

H, W = 32, 48
FRAMES = 5


@pytest.fixture(scope="module")
def student():
    return _randomize(_lite(), seed=7)


@pytest.fixture(scope="module")
def exported(student, calibration_dir, tmp_path_factory):
    """`exported(mode, calibrator, io, qat_steps)`: the path of that export of `student`, and
    its report."""
    from tf_deraindrop.export.int8.options import Int8Options
    from tf_deraindrop.export.tflite import export_tflite

    folder = tmp_path_factory.mktemp("stream")
    cache = {}

    def get(mode: str, calibrator: str = "tensorflow", io: str = "float32", qat_steps: int = 0):
        key = (mode, calibrator, io, qat_steps)
        if key not in cache:
            path = folder / f"{mode}_{calibrator}_{io}.tflite"
            lines: list[str] = []
            export_tflite(
                student,
                str(path),
                H,
                W,
                quantize=mode,
                calibration_dir=calibration_dir,
                uint8_io=io == "uint8",
                progress=False,
                log=lines.append,
                int8=Int8Options(
                    calibrator=calibrator,
                    samples=8,
                    qat_steps=qat_steps,
                    qat_dir=calibration_dir if qat_steps else None,
                    qat_crop=32,
                ),
            )
            cache[key] = str(path), lines
        return cache[key]

    return get


def _video(count: int = FRAMES, seed: int = 3) -> list[np.ndarray]:
    """A still scene with sensor noise for three frames, then a cut to another scene."""
    from tf_deraindrop.export.samples import synthetic_images

    first, second = synthetic_images(2, H, W, seed=seed)
    rng = np.random.default_rng(seed)
    scenes = [first] * 3 + [second] * (count - 3)
    return [np.clip(s + rng.normal(0, 0.01, s.shape), 0, 1).astype(np.float32) for s in scenes]


def _keras_stream(student, frames):
    """`LiteGenerator.stream` over `frames`, the state carried: `(O, A, h, c)` per frame."""
    state, found = None, []
    for frame in frames:
        derained, attention, state = student.stream(frame[None], state)
        found.append(tuple(np.asarray(t)[0] for t in (derained, attention, *state)))
    return found


def test_float32_stream_signature_is_keras_stream_over_frames(student, exported):
    """Zero state `steps` times, then one call a frame: `LiteGenerator.stream`, to 1e-4."""
    from tf_deraindrop.inference.tflite import LiteDerainer

    path, _ = exported("none")
    derainer = LiteDerainer(path)
    assert derainer.has_stream and derainer.stream_steps == student.steps
    runner = derainer.interpreter.get_signature_runner("stream")
    frames = _video()
    zeros = np.zeros((1, H // 4, W // 4, student.attention_filters), np.float32)
    hidden, cell = zeros, zeros
    for k, (frame, expected) in enumerate(zip(frames, _keras_stream(student, frames))):
        for _ in range(student.steps if k == 0 else 1):
            out = runner(image=frame[None], hidden=hidden, cell=cell)
            hidden, cell = out["next_hidden"], out["next_cell"]
        got = [out[n][0] for n in ("derained", "attention", "next_hidden", "next_cell")]
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, atol=1e-4)
    # The state does change the result: one step from the zero state differs.
    fresh = runner(image=frames[-1][None], hidden=zeros, cell=zeros)["attention"][0]
    assert np.abs(fresh - got[1]).max() > 1e-3


@pytest.mark.parametrize(
    "mode,calibrator,io,floor",
    [
        ("none", "tensorflow", "float32", 50),
        ("none", "tensorflow", "uint8", 45),
        ("float16", "tensorflow", "float32", 40),
        ("dynamic", "tensorflow", "float32", 25),
        ("int8", "tensorflow", "float32", 25),
        ("int8", "converter", "float32", 25),
        ("int8", "tensorflow", "uint8", 25),
    ],
)
def test_every_mode_streams_close_to_keras_both_signatures_one_partition(
    mode, calibrator, io, floor, student, exported
):
    from tf_deraindrop.export.analysis import xnnpack_coverage
    from tf_deraindrop.export.convert import float_ops
    from tf_deraindrop.export.int8.stream import stream_coverage
    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.metrics import psnr

    path, report = exported(mode, calibrator, io)
    for coverage in (xnnpack_coverage(path), stream_coverage(path)):
        if (mode, io) == ("int8", "uint8"):  # as per frame: uint8 <-> int8 requantizations
            assert coverage.partitions == 1 and set(coverage.not_taken) == {"QUANTIZE"}
        else:
            assert coverage.complete, str(coverage)
    assert any("Stream signature" in line and "1 partition(s)" in line for line in report)
    if mode == "int8":
        with open(path, "rb") as f:
            assert float_ops(f.read()) == []  # both subgraphs
    derainer = LiteDerainer(path)
    frames = _video()
    for frame, expected in zip(frames, _keras_stream(student, frames)):
        got, attention = derainer.stream(frame, return_attention=True)
        assert got.dtype == np.uint8 and attention.shape == (H, W)
        assert psnr(got.astype(np.float32) / 255, np.clip(expected[0], 0, 1)) > floor


def _convert_both_ways(source, generator, folder, mode, samples):
    """The `.tflite` of `source` without and with the `stream` signature."""
    from tf_deraindrop.export.convert import convert, write_saved_model
    from tf_deraindrop.export.int8.stream import int8_stream

    models = []
    for stream in (False, True):
        calibration = None
        if stream and mode == "int8":
            source, calibration, _ = int8_stream(
                generator, (source, None, ""), samples, "tensorflow"
            )
        saved = str(folder / f"saved_{stream}")
        write_saved_model(source, saved, H, W, stream=stream)
        path = folder / f"{mode}_{stream}.tflite"
        path.write_bytes(convert(saved, mode, calibration))
        models.append(path)
    return models


@pytest.mark.parametrize("mode", ["none", "int8"])
def test_per_frame_signature_is_unchanged_and_first(mode, student, tmp_path):
    from tf_deraindrop.export.analysis import op_counts
    from tf_deraindrop.export.int8.calibrate import fixed_range_graph
    from tf_deraindrop.export.samples import synthetic_images
    from tf_deraindrop.inference.tflite import LiteDerainer

    samples = synthetic_images(4, H, W, seed=9)
    source = student
    if (
        mode == "int8"
    ):  # the per-frame graph with its fixed ranges, as tf_deraindrop.export.tflite's
        source, _ = fixed_range_graph(student, H, W, samples)
    alone, both = _convert_both_ways(source, student, tmp_path, mode, samples)
    assert op_counts(alone) == op_counts(both)  # the first subgraph is `derain`
    frame = _video()[0]
    a, b = LiteDerainer(alone), LiteDerainer(both)
    assert not a.has_stream and b.has_stream
    np.testing.assert_array_equal(a.run_tile(frame), b.run_tile(frame))
    from ai_edge_litert.interpreter import Interpreter

    plain = Interpreter(model_path=str(both))  # no signature named: the first subgraph
    plain.allocate_tensors()
    assert [tuple(d["shape"]) for d in plain.get_input_details()] == [(1, H, W, 3)]


def test_carry_state_derain_and_reset(exported):
    from tf_deraindrop.inference.tflite import LiteDerainer

    path, _ = exported("none")
    frames = _video()
    streamed = LiteDerainer(path)
    expected = [streamed.stream(f) for f in frames]
    carried = LiteDerainer(path, carry_state=True)
    for frame, want in zip(frames, expected):
        np.testing.assert_array_equal(carried.derain(frame), want)
    carried.reset()
    np.testing.assert_array_equal(carried.derain(frames[0]), expected[0])
    # Without a reset, the same frame again is one more step from the state.
    _, again = carried.derain(frames[0], return_attention=True)
    carried.reset()
    _, first = carried.derain(frames[0], return_attention=True)
    assert np.abs(again - first).max() > 1e-4
    low = LiteDerainer(path, low_memory=True)
    for frame, want in zip(frames, expected):
        np.testing.assert_array_equal(low.stream(frame), want)


def test_bad_use_is_a_clear_error(exported, student, tmp_path):
    from tf_deraindrop.export.convert import convert, write_saved_model
    from tf_deraindrop.inference.tflite import LiteDerainer, LiteModelError

    path, _ = exported("none")
    carried = LiteDerainer(path, carry_state=True)
    wrong = np.zeros((H + 4, W, 3), np.uint8)
    with pytest.raises(ValueError, match=rf"exactly the export size {H}x{W}, got {H + 4}x{W}"):
        carried.derain(wrong)
    with pytest.raises(ValueError, match="exactly the export size"):
        LiteDerainer(path).stream(np.zeros((H, W // 2, 3), np.float32))
    LiteDerainer(path).derain(wrong)  # without the state carried, tiles cover any size

    saved = str(tmp_path / "saved")
    write_saved_model(student, saved, H, W, stream=False)
    alone = tmp_path / "alone.tflite"
    alone.write_bytes(convert(saved, "none"))
    with pytest.raises(LiteModelError, match="no 'stream' signature"):
        LiteDerainer(alone, carry_state=True)
    with pytest.raises(ValueError, match="no 'stream' signature"):
        LiteDerainer(alone).stream(np.zeros((H, W, 3), np.uint8))


def test_fine_tuned_weights_carry_over_to_another_graph_of_the_model(student):
    """The first frame of `stream` (another graph) with the per-frame graph's trained weights
    computes what the fine-tuned per-frame graph computes (`test_qat` checks the same through
    channel equalization, which this student has no group for)."""
    import tensorflow as tf

    from tests.helpers.export import run_frozen
    from tf_deraindrop.export.frozen import FrozenGraph, freeze
    from tf_deraindrop.export.int8.qat import fine_tune
    from tf_deraindrop.export.int8.qat_graph import with_trained_weights
    from tf_deraindrop.export.samples import synthetic_images

    samples = synthetic_images(2, H, W, seed=1)
    tuned, _ = fine_tune(student, H, W, samples, samples, steps=3, crop=32, learning_rate=1e-3)
    step = student.deploy_stream_graph()
    first = tf.function(lambda image: step(image)[:2])
    concrete = first.get_concrete_function(tf.TensorSpec((1, H, W, 3), tf.float32))
    outputs = tuple(t.name for t in concrete.graph.outputs)
    graph = FrozenGraph(concrete.graph.as_graph_def(), concrete.graph.inputs[0].name, outputs, H, W)
    carried = with_trained_weights(graph, freeze(student, H, W), tuned.frozen, tuned.scales)

    image = samples[0]
    expected = run_frozen(tuned.frozen, image)
    np.testing.assert_allclose(run_frozen(carried, image), expected, atol=2e-5)
    assert np.abs(run_frozen(graph, image) - expected).max() > 1e-3  # the weights did change


def test_fine_tuned_int8_export_streams(student, exported):
    """`--qat-steps`: both signatures int8 in one partition, the stream close to Keras."""
    from tf_deraindrop.export.int8.stream import stream_coverage
    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.metrics import psnr

    path, report = exported("int8", qat_steps=2)
    assert any("'stream' signature (the fine-tuned weights)" in line for line in report), report
    assert stream_coverage(path).complete
    derainer = LiteDerainer(path)
    frames = _video()
    for frame, expected in zip(frames, _keras_stream(student, frames)):
        got = derainer.stream(frame).astype(np.float32) / 255
        assert psnr(got, np.clip(expected[0], 0, 1)) > 25


def test_predict_carry_state_on_a_video(exported, tmp_path, capsys):
    """`predict --carry-state`: each video from the zero state, frames as `LiteDerainer.stream`."""
    from tests.helpers.video import decode, make_video
    from tf_deraindrop.cli.predict import main
    from tf_deraindrop.inference.tflite import LiteDerainer

    path, _ = exported("none")
    video = tmp_path / "drive.mp4"
    make_video(video, frames=6, size=(H, W))
    frames, _ = decode(video)
    derainer = LiteDerainer(path)
    streamed = [derainer.stream(f) for f in frames]
    per_frame = [derainer.derain(f) for f in frames]
    again = tmp_path / "again.mp4"  # one run, two videos: each from the zero state
    again.write_bytes(video.read_bytes())
    out = tmp_path / "out"
    argv = ["--weights", path, str(video), str(again), "--codec", "ffv1", "--no-progress"]
    assert main([*argv, "--carry-state", "-o", str(out)]) == 0
    for name in ("drive", "again"):
        (written,) = out.glob(f"{name}.*")
        got, _ = decode(written)  # ffv1 in RGB: lossless
        assert len(got) == len(streamed)
        for a, b in zip(got, streamed):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(got, per_frame))

    other = tmp_path / "other.mp4"
    make_video(other, frames=2, size=(H + 8, W))
    assert main(["--weights", path, str(other), "-o", str(tmp_path / "x"), "--carry-state"]) == 2
    assert f"other.mp4 is {H + 8}x{W}, the model {H}x{W}" in capsys.readouterr().err
