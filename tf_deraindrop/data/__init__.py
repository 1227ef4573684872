"""Training data: pairs on disk, the per-example graph, the `tf.data` pipeline, TFRecords.

* `tf_deraindrop.data.pairs`: the Raindrop layout, `find_pairs`,
  `split_validation`, `check_pairs` (no TensorFlow).
* `tf_deraindrop.data.examples`: decoding, cropping and the mask, per example.
* `tf_deraindrop.data.pipeline`: `make_dataset`.
* `tf_deraindrop.data.records`: the TFRecord schema, writer and reader.

`make_dataset` is imported on first use, so that `tf_deraindrop.data.pairs`
(and the names below) load without TensorFlow.
"""

from tf_deraindrop.data.masks import DEFAULT_THRESHOLD as DEFAULT_MASK_THRESHOLD
from tf_deraindrop.data.pairs import (
    DatasetError,
    DatasetWarning,
    Pair,
    check_pairs,
    find_pairs,
    image_size,
    is_tfrecord_dir,
    split_validation,
)

__all__ = [
    "DEFAULT_MASK_THRESHOLD",
    "DatasetError",
    "DatasetWarning",
    "Pair",
    "check_pairs",
    "find_pairs",
    "image_size",
    "is_tfrecord_dir",
    "make_dataset",
    "split_validation",
]


def __getattr__(name: str):
    if name == "make_dataset":
        from tf_deraindrop.data.pipeline import make_dataset

        return make_dataset
    raise AttributeError(f"module 'tf_deraindrop.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
