"""The training CLI: configuration, resume after kill -9, TensorBoard events, NaN stop,
bad input, and the demo."""

from __future__ import annotations

import functools
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers.train import (
    CROP,
    kill_at_first_checkpoint,
    make_pairs,
    read_events,
    run_train,
    train_command,
)
from tf_deraindrop.cli import train as train_module
from tf_deraindrop.training.config import ConfigError, TrainConfig

STEPS = 6
#: A run of STEPS steps on 3 training pairs (2 epochs), checkpoints every 2 steps.
RUN_FLAGS = {
    "crop-size": CROP,
    "steps": STEPS,
    "val-fraction": 0.25,
    "checkpoint-every": 2,
    "log-every": 1,
    "image-every": 3,
    "vgg-weights": "none",
    "seed": 7,
}


def _flags(data_dir, out_dir, **overrides) -> list[str]:
    values = {**RUN_FLAGS, **overrides, "data-dir": data_dir, "out-dir": out_dir}
    return [part for key, value in values.items() for part in (f"--{key}", str(value))]


def _checkpoint_values(out_dir) -> dict[str, np.ndarray]:
    path = tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    names = [n for n in reader.get_variable_to_shape_map() if "save_counter" not in n]
    return {n: reader.get_tensor(n) for n in names if not n.startswith("_CHECKPOINTABLE")}


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), count=4, size=40)


@pytest.fixture(scope="module")
def uninterrupted_run(pairs_dir, tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("uninterrupted"))
    assert train_module.main(_flags(pairs_dir, out_dir)) == 0
    return out_dir


# Configuration -------------------------------------------------------------------


def test_config_layers_defaults_toml_and_flags(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('crop_size = 128\ng-lr = 1e-4\nlambdas = [0.5, 0.7, 1.0]\nout_dir = "x"\n')
    args = train_module.build_parser().parse_args(
        ["--config", str(toml), "--data-dir", "d", "--crop-size", "96", "--out-dir", str(tmp_path)]
    )
    config, resume = train_module.resolve_config(args)
    assert config.crop_size == 96  # the flag wins over the file
    assert config.g_lr == 1e-4  # the file wins over the default
    assert config.lambdas == (0.5, 0.7, 1.0)
    assert config.theta == 0.8 and config.gamma == 0.05 and config.gan_weight == 0.01
    assert config.out_dir == str(tmp_path) and resume is False


def test_demo_defaults_apply_without_a_data_dir(tmp_path):
    args = train_module.build_parser().parse_args(["--out-dir", str(tmp_path), "--steps", "3"])
    config, _ = train_module.resolve_config(args)
    assert config.data_dir is None
    assert config.crop_size == train_module.DEMO_DEFAULTS["crop_size"]
    assert config.steps == 3


@pytest.mark.parametrize(
    "values, message",
    [
        ({"crop_sise": 64}, "unknown setting 'crop_sise'"),
        ({"crop_size": 30}, "--crop-size"),
        ({"precision": "float64"}, "--precision"),
        ({"steps": 2.5}, "'steps'"),
        ({"lambdas": [1.0, 2.0]}, "--lambdas"),
    ],
)
def test_bad_settings_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig().update(values, source="test")


def test_cli_usage_errors_exit_2_with_a_message(tmp_path, capsys):
    assert train_module.main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    assert train_module.main(["--config", str(bad)]) == 2
    assert "unknown setting 'stepz'" in capsys.readouterr().err


# Resume, TensorBoard, NaN ----------------------------------------------------------


def test_resume_after_kill_9_matches_the_uninterrupted_run(pairs_dir, uninterrupted_run, tmp_path):
    out_dir = str(tmp_path / "killed")
    index = os.path.join(out_dir, "checkpoints", "checkpoint")
    kill_at_first_checkpoint(train_command(*_flags(pairs_dir, out_dir)), out_dir)
    killed_at = int(tf.train.latest_checkpoint(os.path.dirname(index)).rsplit("-", 1)[1])
    assert 0 < killed_at < STEPS

    # The same command resumes (the default when the out-dir holds a run).
    assert train_module.main(_flags(pairs_dir, out_dir)) == 0
    saved = json.load(open(os.path.join(out_dir, "config.json")))
    assert saved["resolved"]["resumed_from_step"] == killed_at

    resumed, uninterrupted = _checkpoint_values(out_dir), _checkpoint_values(uninterrupted_run)
    assert resumed.keys() == uninterrupted.keys()
    assert int(resumed["global_step/.ATTRIBUTES/VARIABLE_VALUE"]) == STEPS
    optimizer_state = [n for n in resumed if "optimizer" in n]
    assert optimizer_state, "the checkpoint holds no optimizer state"
    for name in resumed:
        np.testing.assert_allclose(
            resumed[name], uninterrupted[name], rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_a_finished_run_trains_no_further(pairs_dir, uninterrupted_run, capsys):
    before = _checkpoint_values(uninterrupted_run)
    assert train_module.main(_flags(pairs_dir, uninterrupted_run)) == 0
    assert "nothing to train" in capsys.readouterr().out
    after = _checkpoint_values(uninterrupted_run)
    assert int(after["global_step/.ATTRIBUTES/VARIABLE_VALUE"]) == STEPS
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_no_resume_refuses_an_existing_run(pairs_dir, uninterrupted_run, capsys):
    assert train_module.main([*_flags(pairs_dir, uninterrupted_run), "--no-resume"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_run_folder_holds_config_model_samples_and_events(uninterrupted_run):
    out = uninterrupted_run
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["config"]["crop_size"] == CROP and saved["config"]["seed"] == 7
    assert saved["resolved"]["total_steps"] == STEPS
    assert saved["resolved"]["perceptual_loss"].startswith("off")
    assert os.path.isfile(os.path.join(out, "generator.keras"))
    assert json.load(open(os.path.join(out, "best.json")))["step"] in (3, 6)
    assert os.path.isfile(os.path.join(out, "samples", "latest.png"))

    events = read_events(os.path.join(out, "logs"))
    for term in ("attention", "multiscale", "g_adversarial", "g_total", "d_adversarial", "map"):
        steps = [step for step, _ in events[f"loss/{term}"]]
        assert steps == list(range(1, STEPS + 1)), term
    for name in ("g_lr", "d_lr", "g_loss_scale", "d_loss_scale"):
        assert f"optimizer/{name}" in events
    assert events["optimizer/g_lr"][0][1] == pytest.approx(2e-4)
    # Validation after each of the two epochs (3 steps each).
    assert [step for step, _ in events["validation/psnr"]] == [3, 6]
    assert all(np.isfinite(v) and v > 0 for _, v in events["validation/psnr"])
    assert all(-1 <= v <= 1 for _, v in events["validation/ssim"])
    panels = events["panels/rainy_A1-A4_output_clean"]
    assert [step for step, _ in panels] == [3, 6]
    width, height, png = panels[0][1]
    # One row per sample (the single validation pair): 7 tiles of CROP with 2-pixel gaps.
    assert (int(width), int(height)) == (7 * CROP + 6 * 2, CROP)
    assert png.startswith(b"\x89PNG")
    assert '"crop_size": 32' in events["config"][0][1]


class _Poison(keras.callbacks.Callback):
    """Makes the generator's output NaN after step `at`, as a diverging run would."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.global_step.numpy()) == self.at:
            bias = self.model.generator.output_conv.bias
            bias.assign(np.full(bias.shape, np.nan, "float32"))


def test_a_nan_loss_stops_the_run_and_names_the_checkpoint_to_resume_from(
    pairs_dir, tmp_path, monkeypatch, capsys
):
    out_dir = str(tmp_path / "nan")
    poisoned = functools.partial(train_module.train, callbacks=[_Poison(at=3)])
    monkeypatch.setattr(train_module, "train", poisoned)
    flags = _flags(pairs_dir, out_dir, **{"checkpoint-every": 1, "steps": 4})
    assert train_module.main(flags) == 1
    err = capsys.readouterr().err
    assert "not finite at step 4" in err
    # ckpt-3 was saved a step before the blow-up and is not confirmed sane
    # (no sane step followed it): the advised resume starts from ckpt-2.
    assert "resumes from" in err and "ckpt-2" in err
    # Step 3's state was saved before the weights went bad; nothing after it.
    latest = tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints"))
    assert latest.endswith("ckpt-3")
    values = _checkpoint_values(out_dir)
    assert all(np.isfinite(v).all() for v in values.values() if v.dtype.kind == "f")


# Bad input ------------------------------------------------------------------------


def test_data_errors_name_the_file_and_exit_2(tmp_path, capsys):
    assert (
        train_module.main(["--data-dir", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path)])
        == 2
    )
    assert "nowhere: no such folder" in capsys.readouterr().err
    lonely = make_pairs(tmp_path / "lonely", count=2, size=40)
    os.remove(os.path.join(lonely, "gt", "1_clean.png"))
    assert train_module.main(["--data-dir", lonely, "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "1_rain.png" in err and "no clean partner" in err
    small = make_pairs(tmp_path / "small", count=2, size=24)
    assert (
        train_module.main(
            ["--data-dir", small, "--out-dir", str(tmp_path / "o2"), "--crop-size", "32"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "_rain.png" in err and "crop" in err


def test_missing_vgg_weights_stop_a_real_run_with_advice(pairs_dir, tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    flags = _flags(pairs_dir, str(tmp_path / "vgg"), **{"vgg-weights": "imagenet"})
    assert train_module.main(flags) == 2
    err = capsys.readouterr().err
    assert "VGG16" in err and "--vgg-weights" in err
    assert not os.path.isdir(os.path.join(tmp_path, "vgg", "checkpoints"))


def test_cli_errors_print_no_traceback(tmp_path):
    result = run_train(
        "--data-dir", str(tmp_path / "absent"), "--out-dir", str(tmp_path), timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "absent: no such folder" in result.stderr


# The demo ---------------------------------------------------------------------------


def test_demo_trains_and_says_where_everything_is(tmp_path):
    out_dir = tmp_path / "demo"
    result = run_train(
        "--steps", "2", "--crop-size", str(CROP), "--out-dir", str(out_dir), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for path in ("checkpoints/ckpt-2", "logs", "samples/latest.png", "generator.keras"):
        assert str(out_dir / path) in result.stdout, path
        assert (out_dir / path).exists() or path.startswith("checkpoints"), path
    assert (out_dir / "demo_data" / "data").is_dir()
    saved = json.load(open(out_dir / "config.json"))
    assert saved["resolved"]["demo"] is True
    if saved["resolved"]["perceptual_loss"].startswith("off"):
        assert "WITHOUT the perceptual loss" in result.stdout

    from tf_deraindrop.inference.loading import load_generator

    generator = load_generator(out_dir / "generator.keras")
    assert generator.compute_dtype == "float32"
    result = generator(np.full((1, 16, 20, 3), 0.5, "float32"))
    assert tuple(result["outputs"][-1].shape) == (1, 16, 20, 3)


def test_tfrecords_train_and_the_learning_rate_decay_takes_effect(pairs_dir, tmp_path):
    from tf_deraindrop.data import find_pairs
    from tf_deraindrop.data.record_writer import write_tfrecords

    pairs = [(p.rainy, p.clean) for p in find_pairs(pairs_dir)]
    write_tfrecords(pairs, tmp_path / "records", num_shards=2, progress=False)
    out_dir = str(tmp_path / "run")
    flags = _flags(str(tmp_path / "records"), out_dir, steps=4, **{"image-every": 4})
    flags += ["--lr-decay-steps", "2", "--lr-decay-rate", "0.5"]
    assert train_module.main(flags) == 0
    saved = json.load(open(os.path.join(out_dir, "config.json")))["resolved"]
    assert saved["training_pairs"] == 4 and saved["validation_pairs"] == 0
    events = read_events(os.path.join(out_dir, "logs"))
    # The rate after step k is the one step k + 1 uses: halved every 2 steps.
    rates = [rate for _, rate in events["optimizer/g_lr"]]
    np.testing.assert_allclose(rates, [2e-4, 1e-4, 1e-4, 5e-5], rtol=1e-5)
    assert [step for step, _ in events["panels/rainy_A1-A4_output_clean"]] == [4]
    assert os.path.isfile(os.path.join(out_dir, "generator.keras"))  # the last one


def test_train_generator_lite_trains_the_student_with_the_gan_losses(pairs_dir, tmp_path, capsys):
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.models import LiteGenerator

    out_dir = str(tmp_path / "lite")
    flags = _flags(pairs_dir, out_dir, steps=2, **{"generator": "lite", "lite-preset": "nano"})
    assert train_module.main(flags) == 0
    generator = load_generator(os.path.join(out_dir, "generator.keras"))
    assert isinstance(generator, LiteGenerator)
    nano, got = LiteGenerator.from_preset("nano").get_config(), generator.get_config()
    assert all(got[k] == nano[k] for k in nano if k not in ("name", "trainable", "dtype"))
    saved = json.load(open(os.path.join(out_dir, "config.json")))["config"]
    assert saved["generator"] == "lite" and saved["lite_preset"] == "nano"
    bad = _flags(pairs_dir, str(tmp_path / "bad"), **{"generator": "lite", "lite-preset": "huge"})
    assert train_module.main(bad) == 2
    assert "--lite-preset" in capsys.readouterr().err
