"""Training data: pairs on disk, the per-example graph, the `tf.data` pipeline, TFRecords.

* `tf_deraindrop.data.pipeline`: `find_pairs`, `check_pairs`, `make_dataset`.
* `tf_deraindrop.data.records`: the TFRecord schema, writer and reader.
"""

from tf_deraindrop.data.pipeline import (
    DEFAULT_MASK_THRESHOLD,
    DatasetError,
    DatasetWarning,
    Pair,
    check_pairs,
    find_pairs,
    image_size,
    is_tfrecord_dir,
    make_dataset,
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
