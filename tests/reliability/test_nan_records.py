"""The NaN records of health.json: a finished run is never rolled back, and a repeated blow-up
blames the settings instead of setting aside good checkpoints."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers.train import NANO_STUDENT, checkpoint_steps, make_pairs, small_run_flags
from tf_deraindrop.cli import train as train_module

HUGE_LR = {"g-lr": 1e4, "d-lr": 1e4}


def _flags(data_dir, out_dir, **overrides) -> list[str]:
    return small_run_flags(data_dir, out_dir, **{"seed": 3, **NANO_STUDENT, **overrides})


def _health(out_dir) -> dict:
    with open(os.path.join(out_dir, "checkpoints", "health.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), count=4, size=40)


def test_a_finished_run_after_a_nan_stop_without_checkpoint_resumes_where_it_ended(
    pairs_dir, tmp_path, capsys
):
    out = str(tmp_path / "run")
    # Blows up before its first checkpoint (every 100 steps): nothing to roll back to.
    blown = _flags(pairs_dir, out, steps=4, **{"checkpoint-every": 100, **HUGE_LR})
    assert train_module.main(blown) == 1
    err = capsys.readouterr().err
    assert "resumes from step 0: no checkpoint was confirmed sane" in err
    assert "confirmed sane), the newest" not in err
    assert not checkpoint_steps(out)
    assert train_module.main(_flags(pairs_dir, out, steps=4)) == 0
    captured = capsys.readouterr()
    assert "Trained steps 0 to 4" in captured.out
    assert "starts again from step 0" in captured.err
    assert _health(out)["nan_stop"] is None
    # The next resume continues the finished run: nothing rolled back or set aside.
    assert train_module.main(_flags(pairs_dir, out, steps=5)) == 0
    captured = capsys.readouterr()
    assert "Trained steps 4 to 5" in captured.out, captured.err[-2000:]
    assert "non-finite" not in captured.err
    assert not os.path.exists(os.path.join(out, "checkpoints", "rejected"))


def test_a_repeated_blow_up_blames_the_settings_and_keeps_the_good_checkpoint(
    pairs_dir, tmp_path, capsys
):
    out = str(tmp_path / "run")
    assert train_module.main(_flags(pairs_dir, out, steps=4)) == 0
    assert train_module.main(_flags(pairs_dir, out, steps=10, **HUGE_LR)) == 1
    capsys.readouterr()
    good = max(_health(out)["confirmed"])
    # Again at the same learning rate: rolls back to the good checkpoint and blows up again.
    assert train_module.main(_flags(pairs_dir, out, steps=10, **HUGE_LR)) == 1
    err = capsys.readouterr().err
    assert f"resuming from ckpt-{good}" in err
    assert "the settings, not the weights, are the cause" in err
    assert "--g-lr 10000 --d-lr 10000" in err and "config.json" in err
    # Kept for the next try (at a lower rate): there, and still confirmed.
    assert good in _health(out)["confirmed"] and good in checkpoint_steps(out)
    assert _health(out)["nan_stop"]["again_from"] == good


def test_restoring_with_a_nan_record_and_no_checkpoint_closes_the_record(tmp_path, capsys):
    import tensorflow as tf

    from tf_deraindrop.training.checkpoints import Health, restore_run

    directory = str(tmp_path / "checkpoints")
    health = Health(directory)
    health["nan_stop"] = {"step": 1, "last_sane": 0}
    health.write()
    assert restore_run(tf.train.Checkpoint(v=tf.Variable(1.0)), directory) is None
    assert "starts again from step 0" in capsys.readouterr().err
    assert Health(directory)["nan_stop"] is None


def test_a_second_blow_up_from_a_confirmed_checkpoint_keeps_it_confirmed(tmp_path):
    from types import SimpleNamespace

    from tf_deraindrop.training.checkpoints import CheckpointSaver, Health

    directory = str(tmp_path / "checkpoints")
    health = Health(directory)
    health.values.update(confirmed=[2, 4], rolled_back_to=4)
    health.write()
    watch = SimpleNamespace(stopped_at=6, last_sane=5)
    saver = CheckpointSaver(SimpleNamespace(directory=directory), 2, watch)
    saver._record_nan_stop()
    assert Health(directory)["confirmed"] == [2, 4]
    assert saver.stopped_again_from() == 4
