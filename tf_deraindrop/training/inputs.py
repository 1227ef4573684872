"""The inputs of a training run: pairs checked once, then datasets for each epoch.

`TrainingInputs.prepare` finds and checks the pairs (or counts the TFRecords)
once per run. Every epoch then builds its stream from the already-checked
pairs: `train(epoch, skip)` for a (resumed) epoch, `validation()` and the
fixed `sample` batch of the image panels. Nothing is re-read from the headers
on later epochs or on other workers' input pipelines.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import warnings

import numpy as np

from tf_deraindrop import data
from tf_deraindrop.training.config import ConfigError, TrainConfig
from tf_deraindrop.utils.files import atomic_path

#: Synthetic demo set: every scikit-image photo, resized to this (H, W), this many times.
DEMO_IMAGE_SIZE = (96, 128)
DEMO_PAIRS_PER_IMAGE = 8
#: The renderer of the demo set, written in its `.complete` file: a set rendered
#: by another (the classic renderer, before this one) is rendered again.
DEMO_RENDERER = "tf_deraindrop.synthetic.render, preset raindrop-dataset"


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch: new shuffles and crops every epoch, reproducible on resume."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**31 - 1)


def ensure_demo_data(path: str, seed: int) -> str:
    """Synthesizes the demo's raindrop pairs into `path` once (atomically, by renaming)."""
    done = os.path.join(path, ".complete")
    if os.path.isfile(done):
        with open(done, encoding="utf-8") as f:
            if DEMO_RENDERER in f.read():
                return path
    from tf_deraindrop.synthetic.synthesize import synthesize_dataset

    print(f"Synthesizing the demo's raindrop pairs into {path} ...", flush=True)
    shutil.rmtree(path, ignore_errors=True)  # an incomplete set from an older version
    with atomic_path(path) as partial:
        count = synthesize_dataset(
            partial,
            pairs_per_image=DEMO_PAIRS_PER_IMAGE,
            seed=seed,
            size=DEMO_IMAGE_SIZE,
            progress=sys.stderr.isatty(),
            preset="raindrop-dataset",
        )
        with open(os.path.join(partial, ".complete"), "w", encoding="utf-8") as f:
            f.write(f"{count} pairs, {DEMO_RENDERER}\n")
    return path


def count_records(directory: str) -> int:
    """Number of examples in a folder of TFRecord shards (reads, does not decode)."""
    import tensorflow as tf

    from tf_deraindrop.data import records

    files = records.find_tfrecords(directory)
    return int(tf.data.TFRecordDataset(files).reduce(0, lambda n, _: n + 1).numpy())


def _checked(pairs: list, config: TrainConfig, what: str) -> list:
    """`pairs` less the bad ones (with `skip_bad`); an empty list if none is usable."""
    if not pairs:
        return []
    try:
        good, _ = data.check_pairs(pairs, config.crop_size, config.skip_bad)
    except data.DatasetError:
        if not config.skip_bad:
            raise
        good = []
    if config.skip_bad:
        good = _decodable(good)
    if not good:
        warnings.warn(
            f"No usable {what} pair; training without {what}.", data.DatasetWarning, stacklevel=3
        )
    return list(good)


def _decodable(pairs: list) -> list:
    """With --skip-bad: `pairs` less those whose pixel data cannot be decoded, named in a warning.

    The header checks pass such a file (valid chunks and checksums); the data
    pipeline would drop it silently while the run still counted it.
    """
    from tf_deraindrop.utils.images import ImageReadError, read_image

    good, bad = [], []
    for pair in pairs:
        try:
            for path in (pair.rainy, pair.clean, pair.mask):
                if path is not None:
                    read_image(path)
        except ImageReadError as err:
            bad.append(f"  {err}")
            continue
        good.append(pair)
    if bad:
        warnings.warn(
            f"Skipped {len(bad)} of {len(pairs)} pairs whose pixel data cannot be decoded:\n"
            + "\n".join(bad),
            data.DatasetWarning,
            stacklevel=4,
        )
    return good


@dataclasses.dataclass
class TrainingInputs:
    """The checked data of one run and the datasets made from it.

    Build it with `TrainingInputs.prepare(config, data_dir, strategy)`.

    Attributes:
        train_source: checked training pairs, or a folder of TFRecord shards.
        val_pairs: checked validation pairs (may be empty).
        n_train: number of training examples (None for TFRecords with a fixed
            `steps_per_epoch`, which are then not counted).
        sample: `(rainy, clean)` numpy batch of up to 3 centre crops for the panels.
    """

    config: TrainConfig
    strategy: object
    train_source: list | str
    val_pairs: list
    n_train: int | None
    sample: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def prepare(cls, config: TrainConfig, data_dir: str, strategy) -> TrainingInputs:
        """Finds and checks the pairs once, splits off validation, reads the sample batch.

        Raises:
            ConfigError: a `--val-fraction` that leaves no training pair.
            data.DatasetError: a bad folder or pair (unless `skip_bad`).
        """
        if data.is_tfrecord_dir(data_dir):
            val_pairs = data.find_pairs(config.val_dir, config.skip_bad) if config.val_dir else []
            if not config.val_dir and config.val_fraction:
                print(
                    f"NOTE: {data_dir} holds TFRecords; --val-fraction does not apply to them. "
                    "Give --val-dir for validation.",
                    flush=True,
                )
            n_train = None if config.steps_per_epoch else count_records(data_dir)
            inputs = cls(
                config, strategy, data_dir, _checked(val_pairs, config, "validation"), n_train
            )
        else:
            # Checked before the split, so a bad pair skipped with --skip-bad
            # cannot leave the validation split empty.
            pairs = _checked(data.find_pairs(data_dir, config.skip_bad), config, "training")
            if not pairs:
                raise data.DatasetError(f"{data_dir}: no usable training pair.")
            if config.val_dir:
                val_pairs = data.find_pairs(config.val_dir, config.skip_bad)
                train_pairs, val_pairs = pairs, _checked(val_pairs, config, "validation")
            else:
                try:
                    train_pairs, val_pairs = data.split_validation(
                        pairs, config.val_fraction, config.seed
                    )
                except ValueError as err:
                    raise ConfigError(f"--val-fraction: {err}") from err
            inputs = cls(config, strategy, list(train_pairs), list(val_pairs), len(train_pairs))
        inputs.sample = inputs._read_sample()
        return inputs

    def _dataset(self, source, **kwargs):
        checked = not isinstance(source, str)
        return data.make_dataset(
            source,
            crop_size=self.config.crop_size,
            mask_threshold=self.config.mask_threshold,
            skip_bad=self.config.skip_bad,
            check=not checked,
            **kwargs,
        )

    def _read_sample(self) -> tuple[np.ndarray, np.ndarray] | None:
        # The panels show the same few centre crops all run long: validation
        # pairs where there are some, else training pairs (or records).
        source = self.val_pairs[:3] or (
            self.train_source if isinstance(self.train_source, str) else self.train_source[:3]
        )
        import tensorflow as tf

        try:
            rainy, clean, _ = next(iter(self._dataset(source, batch_size=3, training=False)))
        except (tf.errors.OpError, StopIteration) as err:
            culprit = self.find_corrupt_image()
            if culprit and not self.config.skip_bad:
                raise data.DatasetError(culprit) from err
            warnings.warn(
                f"No sample panels: {culprit or 'the sample pairs cannot be read'}.",
                data.DatasetWarning,
                stacklevel=2,
            )
            return None
        return rainy.numpy(), clean.numpy()

    def train(self, epoch: int, skip: int = 0):
        """The distributed training stream of `epoch`, `skip` batches in (dropped undecoded)."""
        import tensorflow as tf

        seed = epoch_seed(self.config.seed, epoch)

        def dataset_fn(context: tf.distribute.InputContext):
            return self._dataset(
                self.train_source,
                batch_size=self.config.batch_size,
                training=True,
                seed=seed,
                num_shards=context.num_input_pipelines,
                shard_index=context.input_pipeline_id,
                skip=skip,
            )

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def validation(self):
        """The distributed validation stream (one pass), or None without validation pairs."""
        import tensorflow as tf

        if not self.val_pairs:
            return None

        def dataset_fn(context: tf.distribute.InputContext):
            # Too few pairs to share out: every worker validates them all,
            # which leaves the mean the same.
            shard = len(self.val_pairs) >= context.num_input_pipelines
            return self._dataset(
                self.val_pairs,
                batch_size=self.config.batch_size,
                training=False,
                num_shards=context.num_input_pipelines if shard else 1,
                shard_index=context.input_pipeline_id if shard else 0,
            )

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def find_corrupt_image(self) -> str | None:
        """The first training or validation image PIL cannot fully decode, with the reason.

        For a TensorFlow decode error that does not say which file failed: the
        headers and checksums were checked up front, so only pixel data is left.
        """
        from tf_deraindrop.utils.images import ImageReadError, read_image

        pairs = [] if isinstance(self.train_source, str) else self.train_source
        for pair in [*pairs, *self.val_pairs]:
            for path in (pair.rainy, pair.clean, pair.mask):
                if path is None:
                    continue
                try:
                    read_image(path)
                except ImageReadError as err:
                    return str(err)
        return None
