"""Distillation: crops and teacher cache line up, the student learns, the CLI runs,
resumes after kill -9 as if uninterrupted, and names bad input with exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers.train import REPO, env, make_pairs, read_events

STEPS = 8
CROP = 32
FEATURES = {"feature-weight": 1}


def _flags(teacher, data_dir, out_dir, **overrides) -> list[str]:
    values = {
        "teacher": teacher,
        "data-dir": data_dir,
        "out-dir": out_dir,
        "preset": "nano",
        "crop-size": CROP,
        "batch-size": 2,
        "steps": STEPS,
        "steps-per-epoch": 4,
        "val-fraction": 0.25,
        "checkpoint-every": 2,
        "log-every": 1,
        "image-every": 4,
        "seed": 3,
        **overrides,
    }
    return [part for key, value in values.items() for part in (f"--{key}", str(value))]


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), count=4, size=40)


def _run(generator_file, pairs_dir, out_dir, **overrides) -> str:
    from tf_deraindrop.cli import distill

    assert distill.main(_flags(generator_file, pairs_dir, str(out_dir), **overrides)) == 0
    return str(out_dir)


@pytest.fixture(scope="module")
def uninterrupted_run(generator_file, pairs_dir, tmp_path_factory):
    return _run(generator_file, pairs_dir, tmp_path_factory.mktemp("uninterrupted"))


@pytest.fixture(scope="module")
def feature_run(generator_file, pairs_dir, tmp_path_factory):
    """As `uninterrupted_run`, with the feature term (`--feature-weight 1`)."""
    return _run(generator_file, pairs_dir, tmp_path_factory.mktemp("features"), **FEATURES)


# Data ----------------------------------------------------------------------------


def _stream(tmp_path, teacher, cached):
    from tf_deraindrop.training.distill import CropStream, FrameStore, TeacherCache, find_examples

    folder = make_pairs(tmp_path / "pairs", count=2, size=48)
    examples, paired = find_examples(folder, str(tmp_path / "frames"), 1.0)
    frames = FrameStore()
    cache = TeacherCache(str(tmp_path / "cache"))
    if cached:
        cache.fill(examples, frames, teacher, "test")
    sizes = [frames.get(e.rainy).shape[:2] for e in examples]
    stream = CropStream(examples, frames, 24, 3, paired, cache if cached else None, sizes)
    return stream, examples, frames, cache


def test_crops_are_reproducible_skippable_and_match_the_teacher_cache(tmp_path):
    from tf_deraindrop.models import LiteGenerator

    teacher = LiteGenerator.from_preset("nano")
    teacher.build((None, None, None, 3))
    stream, examples, frames, cache = _stream(tmp_path, teacher, cached=True)
    batches = list(stream.batches(seed=5, steps=4))
    again = list(stream.batches(seed=5, steps=4))
    tail = list(stream.batches(seed=5, steps=4, skip=2))
    for a, b in zip(batches, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(tail[0]["rainy"], batches[2]["rainy"])
    other = next(stream.batches(seed=6, steps=1))
    assert not np.array_equal(other["rainy"], batches[0]["rainy"])

    # Every crop of a cached output is the same crop of the teacher's output on
    # the whole frame, at the output's own scale (flips included).
    plan = stream.plan(seed=5, steps=4)
    for items, batch in zip(plan, batches):
        for k, (i, y, x, flip) in enumerate(items):
            whole = teacher.predict_on_batch(frames.get(examples[i].rainy)[None])
            for key, scale, value in (
                ("t_quarter", 4, whole["outputs"][0]),
                ("t_half", 2, whole["outputs"][1]),
                ("t_out", 1, whole["outputs"][2]),
                ("t_attention", 1, whole["attention"][-1]),
            ):
                c, ys, xs = 24 // scale, y // scale, x // scale
                expected = np.asarray(value)[0, ys : ys + c, xs : xs + c]
                expected = expected[:, ::-1] if flip else expected
                np.testing.assert_allclose(batch[key][k], expected, atol=2e-3)  # float16 cache
            rainy = frames.get(examples[i].rainy)[y : y + 24, x : x + 24]
            rainy = rainy[:, ::-1] if flip else rainy
            np.testing.assert_array_equal(batch["rainy"][k], rainy)
            assert batch["has_clean"][k] == 1.0


def test_the_student_learns_the_teacher_on_a_fixed_batch(tmp_path):
    import keras

    from tf_deraindrop.models import LiteGenerator
    from tf_deraindrop.training.distill import Distiller

    keras.utils.set_random_seed(0)
    teacher = LiteGenerator.from_preset("nano", steps=3)
    teacher.build((None, None, None, 3))
    stream, *_ = _stream(tmp_path, teacher, cached=False)
    batch = next(stream.batches(seed=1, steps=1))
    before = [np.array(w) for w in teacher.get_weights()]
    student = LiteGenerator.from_preset("nano")
    model = Distiller(student, teacher)
    model.compile(keras.optimizers.Adam(3e-3), paired=True)
    first = model.train_on_batch(batch, return_dict=True)
    for _ in range(40):
        logs = model.train_on_batch(batch, return_dict=True)
    assert set(first) >= {"distill", "attention", "ground_truth", "total"}
    assert int(model.global_step.numpy()) == 41
    # Running means over the steps: the last value is far below the first.
    model.reset_metrics()
    last = model.train_on_batch(batch, return_dict=True)
    assert last["distill"] < 0.5 * first["distill"], (first, logs, last)
    for a, b in zip(before, teacher.get_weights()):  # the teacher did not move
        np.testing.assert_array_equal(a, b)


def test_the_adversarial_term_trains_the_discriminator_on_cached_teacher_outputs(tmp_path):
    import keras

    from tf_deraindrop.models import Discriminator, LiteGenerator
    from tf_deraindrop.training.distill import Distiller

    teacher = LiteGenerator.from_preset("nano", steps=3)
    teacher.build((None, None, None, 3))
    stream, *_ = _stream(tmp_path, teacher, cached=True)
    model = Distiller(LiteGenerator.from_preset("nano"), None, Discriminator(crop_size=24))
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3), gan_weight=0.05)
    # Every variable exists before the first step, for the optimizer and the checkpoint.
    before = [np.array(w) for w in model.discriminator.trainable_weights]
    assert before and len(model.d_optimizer.variables) > 1
    logs = model.train_on_batch(next(stream.batches(seed=1, steps=1)), return_dict=True)
    assert np.isfinite(logs["d_adversarial"]) and np.isfinite(logs["g_adversarial"])
    after = model.discriminator.trainable_weights
    assert len(after) == len(before)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


# Feature distillation ---------------------------------------------------------------


def test_features_are_the_maps_the_side_outputs_come_from_and_leave_call_unchanged():
    import keras
    from keras import ops

    from tf_deraindrop.models import Generator, LiteGenerator

    keras.utils.set_random_seed(1)
    image = np.random.default_rng(1).random((2, 32, 48, 3)).astype("float32")
    teacher, student = Generator(), LiteGenerator.from_preset("nano")
    sides = {  # how each model makes S_quarter and S_half from its maps
        teacher: (teacher.outframe1, teacher.outframe2, lambda x, k: 0.0),
        student: (student.side_quarter, student.side_half, lambda x, k: ops.average_pool(x, k, k)),
    }
    channels = {teacher: (256, 128), student: (student.width, student.half_filters)}
    for model, (side_quarter, side_half, pooled) in sides.items():
        model.build((None, None, None, 3))
        result = model(image)
        features, again = model.features(image, with_result=True)
        assert sorted(features) == ["half", "quarter"]
        assert tuple(features["quarter"].shape) == (2, 8, 12, channels[model][0])
        assert tuple(features["half"].shape) == (2, 16, 24, channels[model][1])
        assert all(f.dtype == "float32" for f in features.values())
        for key in ("attention", "outputs"):  # the same pass as call, to the bit
            for a, b in zip(result[key], again[key], strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        remade = [
            side_quarter(features["quarter"]) + pooled(image, 4),
            side_half(features["half"]) + pooled(image, 2),
        ]
        for made, output in zip(remade, result["outputs"][:2]):
            np.testing.assert_allclose(np.asarray(made), np.asarray(output), atol=1e-5)
        alone = model.features(image)
        np.testing.assert_array_equal(np.asarray(alone["half"]), np.asarray(features["half"]))


def test_the_feature_term_trains_the_adapters_and_the_student_on_a_fixed_batch():
    import keras

    from tf_deraindrop.models import Generator, LiteGenerator
    from tf_deraindrop.training.distill import Distiller, FeatureAdapters

    keras.utils.set_random_seed(0)
    teacher = Generator()
    teacher.build((None, None, None, 3))
    student = LiteGenerator.from_preset("nano")
    adapters = FeatureAdapters.between(student, teacher)
    assert adapters.channels == {"half": (12, 128), "quarter": (24, 256)}
    batch = {"rainy": np.random.default_rng(0).random((3, 24, 24, 3)).astype("float32")}
    before = [np.array(w) for w in adapters.get_weights()]
    model = Distiller(student, teacher, adapters=adapters)
    # Only the feature term: it alone must move the student.
    model.compile(
        keras.optimizers.Adam(3e-3), attention_weight=0, lambdas=(0, 0, 0), feature_weight=1
    )
    student_before = [np.array(w) for w in student.get_weights()]
    first = model.train_on_batch(batch, return_dict=True)
    for _ in range(15):
        model.train_on_batch(batch, return_dict=True)
    model.reset_metrics()
    last = model.train_on_batch(batch, return_dict=True)
    assert last["feature"] < 0.5 * first["feature"], (first, last)
    assert all(not np.array_equal(a, b) for a, b in zip(before, adapters.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))
    assert model.checkpoint().adapters is adapters  # resumed with the run


# CLI runs --------------------------------------------------------------------------


def test_run_folder_holds_config_student_events_and_panels(uninterrupted_run):
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.models import LiteGenerator

    out = uninterrupted_run
    record = json.load(open(os.path.join(out, "config.json")))
    assert record["config"]["preset"] == "nano" and record["resolved"]["paired"] is True
    assert record["resolved"]["teacher_outputs"].startswith("on the fly")
    student = load_generator(os.path.join(out, "generator.keras"))
    assert isinstance(student, LiteGenerator) and student.half_filters == 12
    best = json.load(open(os.path.join(out, "best.json")))
    assert np.isfinite(best["val_psnr"])
    events = read_events(os.path.join(out, "logs"))
    for tag in ("loss/distill", "loss/attention", "loss/ground_truth", "validation/psnr"):
        assert tag in events, sorted(events)
    assert "validation/psnr_y_gt" in events and "validation/teacher_psnr_y_gt" in events
    assert "panels/rainy_teacher_student_attention" in events
    assert os.path.isfile(os.path.join(out, "samples", "latest.png"))


def test_feature_run_records_and_logs_the_term_and_exports_the_bare_student(feature_run):
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.models import LiteGenerator

    record = json.load(open(os.path.join(feature_run, "config.json")))
    assert record["config"]["feature_weight"] == 1
    assert record["resolved"]["feature_maps"] == {"half": [12, 128], "quarter": [24, 256]}
    events = read_events(os.path.join(feature_run, "logs"))
    assert "loss/feature" in events and "loss/distill" in events, sorted(events)
    student = load_generator(os.path.join(feature_run, "generator.keras"))
    bare = LiteGenerator.from_preset("nano")
    bare.build((None, None, None, 3))
    assert type(student) is LiteGenerator and student.count_params() == bare.count_params()


@pytest.mark.parametrize(
    "reference, overrides", [("uninterrupted_run", {}), ("feature_run", FEATURES)]
)
def test_resume_after_kill_9_matches_the_uninterrupted_run(
    generator_file, pairs_dir, reference, overrides, request, tmp_path
):
    import tensorflow as tf

    from tf_deraindrop.cli import distill

    uninterrupted_run = request.getfixturevalue(reference)
    out_dir = str(tmp_path / "killed")
    index = os.path.join(out_dir, "checkpoints", "checkpoint")
    command = [sys.executable, "-m", "tf_deraindrop.distill"]
    process = subprocess.Popen(
        command + _flags(generator_file, pairs_dir, out_dir, **overrides),
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not (os.path.isfile(index) and "ckpt-" in open(index).read()):
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
    killed_at = int(tf.train.latest_checkpoint(os.path.dirname(index)).rsplit("-", 1)[1])
    assert 0 < killed_at < STEPS

    # Resumed without the flags: config.json brings them back (--feature-weight included).
    assert distill.main(_flags(generator_file, pairs_dir, out_dir)) == 0
    record = json.load(open(os.path.join(out_dir, "config.json")))
    assert record["resolved"]["resumed_from_step"] == killed_at
    assert record["config"]["feature_weight"] == overrides.get("feature-weight", 0)

    def values(folder):
        reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(f"{folder}/checkpoints"))
        names = [n for n in reader.get_variable_to_shape_map() if "save_counter" not in n]
        return {n: reader.get_tensor(n) for n in names if not n.startswith("_CHECKPOINTABLE")}

    resumed, uninterrupted = values(out_dir), values(uninterrupted_run)
    assert resumed.keys() == uninterrupted.keys()
    assert int(resumed["global_step/.ATTRIBUTES/VARIABLE_VALUE"]) == STEPS
    assert any("optimizer" in n for n in resumed)
    if overrides:  # the adapters are in the checkpoints and resumed exactly
        from tf_deraindrop.training.distill import FeatureAdapters

        restored = []
        for folder in (out_dir, uninterrupted_run):
            adapters = FeatureAdapters({"half": (12, 128), "quarter": (24, 256)})
            adapters.build()  # random weights: two runs' differ unless both are read
            prefix = tf.train.latest_checkpoint(os.path.join(folder, "checkpoints"))
            tf.train.Checkpoint(adapters=adapters).read(prefix).expect_partial()
            restored.append(adapters.get_weights())
        for a, b in zip(*restored, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in resumed:
        np.testing.assert_allclose(
            resumed[name], uninterrupted[name], rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_rainy_images_and_a_video_with_a_cached_teacher(generator_file, tmp_path):
    from tests.helpers.video import make_video
    from tf_deraindrop.cli import distill
    from tf_deraindrop.utils.images import read_image, write_image

    folder = tmp_path / "footage"
    folder.mkdir()
    pairs = make_pairs(tmp_path / "pairs", count=2, size=40)
    for name in sorted(os.listdir(os.path.join(pairs, "data"))):
        write_image(folder / name, read_image(os.path.join(pairs, "data", name)))
    make_video(folder / "drive.mp4", frames=8, size=(48, 64), rate=4)
    out = tmp_path / "run"
    flags = _flags(generator_file, str(folder), str(out), steps=2, **{"steps-per-epoch": 2})
    assert distill.main([*flags, "--cache-teacher", "--frame-every", "0.5"]) == 0
    frames = os.listdir(out / "frames" / "drive")
    assert len([f for f in frames if f.endswith(".png")]) == 4  # 2 s of video, one each 0.5 s
    record = json.load(open(out / "config.json"))
    assert record["resolved"]["paired"] is False
    assert record["resolved"]["teacher_outputs"] == "cached"
    assert record["resolved"]["training_frames"] + record["resolved"]["validation_frames"] == 6
    assert len(os.listdir(out / "teacher_cache")) == 6


# Bad input -------------------------------------------------------------------------


def test_bad_teacher_empty_folder_and_unreadable_video_exit_2_naming_them(
    generator_file, pairs_dir, tmp_path, capsys
):
    from tf_deraindrop.cli import distill

    out = str(tmp_path / "run")

    def error(*argv) -> str:
        capsys.readouterr()
        assert distill.main(list(argv)) == 2
        return capsys.readouterr().err

    missing = str(tmp_path / "nope.keras")
    assert missing in error(*_flags(missing, pairs_dir, out))

    not_a_generator = tmp_path / "notes.keras"
    not_a_generator.write_text("not a model")
    message = error(*_flags(str(not_a_generator), pairs_dir, out))
    assert "--teacher" in message and str(not_a_generator) in message

    empty = tmp_path / "empty"
    empty.mkdir()
    message = error(*_flags(generator_file, str(empty), out))
    assert str(empty) in message and "no rainy images" in message

    footage = tmp_path / "footage"
    footage.mkdir()
    (footage / "broken.mp4").write_bytes(os.urandom(4096))
    message = error(*_flags(generator_file, str(footage), out))
    assert str(footage / "broken.mp4") in message and "Traceback" not in message

    assert "--crop-size" in error(*_flags(generator_file, pairs_dir, out, **{"crop-size": 30}))
    message = error(*_flags(generator_file, pairs_dir, out, **FEATURES), "--cache-teacher")
    assert "--feature-weight" in message and "--cache-teacher" in message
    assert not os.path.isdir(os.path.join(out, "checkpoints"))
