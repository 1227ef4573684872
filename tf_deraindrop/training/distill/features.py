"""Feature distillation: the student's intermediate maps against the teacher's.

As in GAN Compression (Li et al., CVPR 2020), each of the student's feature
maps goes through a learned 1x1 convolution to the teacher's channel count
and is matched with a mean squared error to the teacher's map of the same
role and size. The maps are those `Generator.features` and
`LiteGenerator.features` return: `"quarter"` (at 1/4 size, what `S_quarter`
is made from) and `"half"` (at 1/2 size, what `S_half` is made from). The
adapters train with the student and are saved in the run's checkpoints, but
never in the exported student (`generator.keras` is the bare model).
"""

from __future__ import annotations

import keras
from keras import ops


def feature_channels(model) -> dict[str, int]:
    """`{name: channels}` of `model.features`, from a symbolic pass (no computation)."""
    model.build((None, None, None, 3))
    maps = model.features(keras.KerasTensor((1, 16, 16, 3)))
    return {name: int(value.shape[-1]) for name, value in maps.items()}


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class FeatureAdapters(keras.layers.Layer):
    """One 1x1 convolution per feature map, from the student's channels to the teacher's.

    Args:
        channels: `{name: (student channels, teacher channels)}`.

    Example:
        >>> adapters = FeatureAdapters.between(student, teacher)  # doctest: +SKIP
        >>> loss = adapters.loss(student.features(x), teacher.features(x))  # doctest: +SKIP
    """

    def __init__(self, channels: dict[str, tuple[int, int]], **kwargs):
        super().__init__(**kwargs)
        self.channels = {str(k): (int(s), int(t)) for k, (s, t) in sorted(channels.items())}
        # One attribute each, not a dict: a tf.train.Checkpoint finds a Keras
        # layer's sub-layers by attribute (a dict of them it does not follow).
        for name, (_, teacher) in self.channels.items():
            conv = keras.layers.Conv2D(teacher, 1, name=f"adapt_{name}", dtype=self.dtype_policy)
            setattr(self, f"adapt_{name}", conv)

    @classmethod
    def between(cls, student, teacher) -> FeatureAdapters:
        """Adapters for every map both models return, built (the student first).

        Raises:
            ValueError: the two models' maps have no name in common.
        """
        student_channels = feature_channels(student)
        teacher_channels = feature_channels(teacher)
        names = sorted(set(student_channels) & set(teacher_channels))
        if not names:
            raise ValueError("the student's and the teacher's features have no map in common")
        adapters = cls({n: (student_channels[n], teacher_channels[n]) for n in names})
        adapters.build(None)
        return adapters

    def build(self, input_shape=None):
        for name, (student, _) in self.channels.items():
            getattr(self, f"adapt_{name}").build((None, None, None, student))
        self.built = True

    def call(self, features: dict) -> dict:
        return {name: getattr(self, f"adapt_{name}")(features[name]) for name in self.channels}

    def loss(self, student_features: dict, teacher_features: dict):
        """Per-example sum over the maps of the mean squared error (adapted student vs teacher)."""
        adapted = self(student_features)
        total = 0.0
        for name in self.channels:
            target = ops.cast(teacher_features[name], "float32")
            error = ops.square(ops.cast(adapted[name], "float32") - target)
            total = total + ops.mean(error, axis=(1, 2, 3))
        return total

    def get_config(self):
        config = super().get_config()
        config["channels"] = {name: list(pair) for name, pair in self.channels.items()}
        return config
