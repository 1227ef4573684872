"""The checkpoint index: rebuilt when damaged (old checkpoints keep rotating out), and roll-backs
that print nothing but their own message."""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from tf_deraindrop.training.checkpoints import Health, existing_checkpoints, restore_run


def _save(directory: str, steps, keep: int = 3) -> tf.train.Checkpoint:
    checkpoint = tf.train.Checkpoint(v=tf.Variable(0.0))
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep)
    for step in steps:
        checkpoint.v.assign(float(step))
        manager.save(checkpoint_number=step)
    return checkpoint


def _steps(directory: str) -> list[int]:
    return [int(p.rsplit("-", 1)[1]) for p in existing_checkpoints(directory)]


def test_a_garbage_index_is_rebuilt_so_old_checkpoints_still_rotate(tmp_path, capsys):
    directory = str(tmp_path / "checkpoints")
    _save(directory, [1, 2, 3])
    with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write("garbage {{{\n")
    checkpoint = tf.train.Checkpoint(v=tf.Variable(0.0))
    assert restore_run(checkpoint, directory).endswith("ckpt-3")
    assert "index" in capsys.readouterr().err
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=3)
    for step in (4, 5):
        manager.save(checkpoint_number=step)
    assert _steps(directory) == [3, 4, 5]


def test_a_roll_back_prints_no_tensorflow_deprecation_notice(tmp_path, capsys):
    directory = str(tmp_path / "checkpoints")
    _save(directory, [1, 2, 3])
    health = Health(directory)
    health.values.update(confirmed=[1], nan_stop={"step": 4, "last_sane": 3})
    health.write()
    # TensorFlow's log goes to a stream of its own: listen to the logger itself.
    logged = []
    listener = logging.Handler()
    listener.emit = lambda record: logged.append(record.getMessage())
    tf.get_logger().addHandler(listener)
    try:
        checkpoint = tf.train.Checkpoint(v=tf.Variable(0.0))
        assert restore_run(checkpoint, directory).endswith("ckpt-1")
    finally:
        tf.get_logger().removeHandler(listener)
    assert "resuming from ckpt-1" in capsys.readouterr().err
    assert not [line for line in logged if "deprecated" in line], logged
