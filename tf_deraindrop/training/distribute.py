"""Choosing the distribution strategy and the precision policy of a training run.

`auto` picks what the machine offers: `multi_worker` where `TF_CONFIG` names a
cluster of several tasks, `mirrored` with several GPUs, the default strategy
otherwise; `mixed_float16` on a GPU, `mixed_bfloat16` on a CPU with native
bfloat16, `float32` on other CPUs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

from tf_deraindrop.training.config import ConfigError


def tf_config() -> dict[str, Any]:
    """The parsed `TF_CONFIG` environment variable (an empty dict when unset)."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'.")
    return value


def cluster_size() -> int:
    """Number of chief and worker tasks that `TF_CONFIG` names (0 without a cluster)."""
    cluster = tf_config().get("cluster", {})
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def task() -> tuple[str, int]:
    """This process's `(task type, index)` from `TF_CONFIG`, or `("worker", 0)`."""
    value = tf_config().get("task", {})
    return str(value.get("type", "worker")), int(value.get("index", 0))


def is_chief() -> bool:
    """Whether this process writes the run's files (checkpoints, logs, exports).

    The chief is the `chief` task where the cluster has one, else worker 0.
    """
    kind, index = task()
    has_chief = bool(tf_config().get("cluster", {}).get("chief"))
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def resolve_strategy_name(name: str) -> str:
    """Turns `auto` into `multi_worker`, `mirrored` or `default`."""
    if name != "auto":
        return name
    if cluster_size() > 1:
        return "multi_worker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Creates the strategy; call it before any other TensorFlow work.

    Args:
        name: `auto`, `default`, `mirrored` (all local GPUs; all logical CPU
            devices where there is no GPU) or `multi_worker` (needs `TF_CONFIG`).

    Raises:
        ConfigError: `multi_worker` without a `TF_CONFIG` cluster.
    """
    name = resolve_strategy_name(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "multi_worker":
        if cluster_size() < 1:
            raise ConfigError(
                "--strategy multi_worker needs TF_CONFIG naming the cluster, e.g. "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"--strategy: unknown strategy '{name}'.")


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """A readable name: `default`, `MirroredStrategy` or `MultiWorkerMirroredStrategy`."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        return "default"
    return type(strategy).__name__


def resolve_precision(name: str = "auto") -> str:
    """Turns `auto` into `mixed_float16` on a GPU, `mixed_bfloat16` on a CPU with native
    bfloat16 (AVX512_BF16 or AMX), and `float32` elsewhere.

    On such a CPU a training step runs about twice as fast in `mixed_bfloat16`
    and a run of the same seed and length reaches the same validation PSNR
    (`benchmarks/bench_train.py`, `benchmarks/bench_precision_curves.py`);
    without native support TensorFlow emulates bfloat16, slower than float32.
    """
    from tf_deraindrop.inference.precision import native_bfloat16

    if name == "auto":
        if tf.config.list_physical_devices("GPU"):
            return "mixed_float16"
        return "mixed_bfloat16" if native_bfloat16(gpus=[])[0] else "float32"
    if name not in ("float32", "mixed_float16", "mixed_bfloat16"):
        raise ConfigError(f"--precision: unknown precision '{name}'.")
    return name


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[str]:
    """Sets Keras' global dtype policy to `name` for the `with` block, then restores it.

    Networks take the global policy when they are built, so they are built
    inside the block; the policy a caller had is back afterwards, also on error.

    Example:
        >>> with precision_policy("mixed_bfloat16"):  # doctest: +SKIP
        ...     generator = Generator()
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several worker processes (public API only)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(spec.get(kind, [])) for kind in ("chief", "worker")) > 1
