"""Distributed training on the CPU: MirroredStrategy over two logical devices, and a
two-process MultiWorkerMirroredStrategy run on 127.0.0.1 (both in child processes,
since devices and the cluster must be set before TensorFlow starts)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

from tests.helpers.train import (
    CROP,
    NANO_STUDENT,
    REPO,
    as_flags,
    env,
    make_pairs,
    train_command,
)

# The training CLI's runs train the smallest student; the paper's network is stepped under
# the strategy in the script.
STUDENT = as_flags(NANO_STUDENT)

TWO_CPUS = textwrap.dedent(
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """
)

# One step on a batch of 2 on one device, and split over 2 replicas, from the same
# weights; then the training CLI on the two replicas.
MIRRORED_SCRIPT = TWO_CPUS + textwrap.dedent(
    """
    import json
    import sys
    import keras
    import numpy as np
    from tf_deraindrop.training.gan import AttentiveGAN
    from tf_deraindrop.models import Discriminator, Generator

    SIZE = 16

    def make(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            gan = AttentiveGAN(Generator(), Discriminator(crop_size=SIZE))
            # Plain SGD: its step is proportional to the gradient, so a wrong
            # reduction over replicas would show (Adam's first step would not).
            gan.compile(keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05))
        return gan

    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single, mirrored = make(tf.distribute.get_strategy()), make(mirrored_strategy)
    for net in ("generator", "discriminator"):
        getattr(mirrored, net).set_weights(getattr(single, net).get_weights())
    before = [w.copy() for w in single.generator.get_weights() + single.discriminator.get_weights()]

    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, (2, SIZE, SIZE, 3)).astype("float32")
    mask = (rng.random((2, SIZE, SIZE, 1)) > 0.8).astype("float32")
    rainy = np.clip(clean + 0.5 * mask, 0, 1).astype("float32")
    data = tf.data.Dataset.from_tensors((rainy, clean, mask)).repeat()
    logs = {}
    for name, gan in (("single", single), ("mirrored", mirrored)):
        history = gan.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
        logs[name] = {k: float(v[-1]) for k, v in history.history.items()}

    def deltas(gan):
        after = gan.generator.get_weights() + gan.discriminator.get_weights()
        return [a - b for a, b in zip(after, before)]

    worst, largest = 0.0, 0.0
    for a, b in zip(deltas(single), deltas(mirrored)):
        worst = max(worst, float(np.max(np.abs(a - b))))
        largest = max(largest, float(np.max(np.abs(a))))
    # The training CLI on the same strategy (a second MirroredStrategy in one
    # process would collide with the first one's collective ops).
    from tf_deraindrop.cli import train

    with mirrored_strategy.scope():
        rc = train.main(sys.argv[1:])
    print(json.dumps({
        "replicas": mirrored_strategy.num_replicas_in_sync,
        "worst_delta_difference": worst,
        "largest_delta": largest,
        "logs": logs,
        "rc": rc,
    }))
    """
)


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_mirrored_strategy_on_two_cpus_matches_one_device_and_trains(tmp_path):
    pairs = make_pairs(tmp_path / "pairs", count=5, size=40)
    out_dir = tmp_path / "run"
    flags = ["--data-dir", pairs, "--out-dir", str(out_dir), "--strategy", "mirrored"]
    flags += ["--steps", "2", "--crop-size", str(CROP), "--vgg-weights", "none", "--seed", "1"]
    flags += ["--val-fraction", "0.4", *STUDENT]
    result = _run_script(MIRRORED_SCRIPT, *flags)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    # One step on a batch of 2 split over 2 replicas equals the step on one device:
    # each replica divides its sum by the global batch size, so the gradients
    # summed over replicas are those of the mean over the global batch.
    assert report["largest_delta"] > 1e-4
    assert report["worst_delta_difference"] < 1e-3 * report["largest_delta"]
    single, mirrored = report["logs"]["single"], report["logs"]["mirrored"]
    for name in ("g_total", "d_total", "attention", "multiscale"):
        assert abs(single[name] - mirrored[name]) <= 1e-4 * abs(single[name]) + 1e-6, name

    # The training CLI: 2 replicas of batch 1, checkpoints, validation, the export.
    assert report["rc"] == 0, result.stderr[-3000:]
    assert "Trained steps 0 to 2" in result.stdout and "val_psnr" in result.stdout
    saved = json.load(open(out_dir / "config.json"))["resolved"]
    assert saved["strategy"] == "MirroredStrategy"
    assert saved["replicas"] == 2 and saved["global_batch_size"] == 2
    assert (out_dir / "checkpoints" / "ckpt-2.index").is_file()
    assert (out_dir / "generator.keras").is_file()


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_worker_run_on_localhost(tmp_path):
    pairs = make_pairs(tmp_path / "pairs", count=4, size=40)
    out_dir = tmp_path / "run"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    flags = ["--data-dir", pairs, "--out-dir", str(out_dir), "--strategy", "multi_worker"]
    flags += ["--steps", "2", "--crop-size", str(CROP), "--vgg-weights", "none", "--seed", "1"]
    flags += ["--val-fraction", "0.25", *STUDENT]
    processes, logs = [], []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        # Output to files: a full pipe nobody reads would stall a worker.
        log = open(tmp_path / f"worker{index}.log", "w+")
        logs.append(log)
        processes.append(
            subprocess.Popen(
                train_command(*flags),
                cwd=REPO,
                env=env(TF_CONFIG=json.dumps(tf_config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        # Bounded in time; a worker that fails would leave the other waiting.
        deadline = time.monotonic() + 300
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(30)
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    saved = json.load(open(out_dir / "config.json"))["resolved"]
    assert saved["strategy"] == "MultiWorkerMirroredStrategy"
    assert saved["replicas"] == 2 and saved["global_batch_size"] == 2
    # The chief (worker 0) writes the run; worker 1's scratch copy is gone.
    assert (out_dir / "checkpoints" / "ckpt-2.index").is_file()
    assert (out_dir / "generator.keras").is_file()
    assert not os.path.exists(out_dir / ".worker-1")
    assert "Trained steps 0 to 2" in outputs[0]
