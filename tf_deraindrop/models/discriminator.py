"""The discriminator, with its attention-guided map (docs/architecture.md, section 4)."""

from __future__ import annotations

import keras
from keras import ops


def _strided_size(size: int) -> int:
    # conv7 and conv8: kernel 5, stride 4, symmetric pad 1.
    return (size + 2 - 5) // 4 + 1


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class Discriminator(keras.Model):
    """The Attentive GAN discriminator as the paper intends it.

    Six 5x5 convs, a 1-channel map `D_map` from the last of them, then the
    features multiplied by the map go through two strided convs and two dense
    layers to one real/fake **logit** (the released code's sigmoid is left to
    a logits loss, which is numerically stable). The released code applies
    conv7 twice, which cannot run; this is the graph of the table in
    docs/architecture.md, section 4.

    The dense layer's input size follows from `crop_size` (224 in the paper:
    32 x 14 x 14), so the discriminator takes square images of that size only.

    Args:
        crop_size: height and width of the images it judges.

    Example:
        >>> d = Discriminator(crop_size=64)
        >>> result = d(keras.ops.zeros((2, 64, 64, 3)))
        >>> tuple(result["map"].shape), tuple(result["logit"].shape)
        ((2, 64, 64, 1), (2, 1))
    """

    def __init__(self, crop_size: int = 224, **kwargs):
        super().__init__(**kwargs)
        self.crop_size = int(crop_size)
        if _strided_size(_strided_size(self.crop_size)) < 1:
            raise ValueError(f"crop_size={crop_size} is too small for the discriminator (min 16).")
        p = self.dtype_policy
        widths = (8, 16, 64, 128, 128, 128)
        self.convs = [
            keras.layers.Conv2D(w, 5, padding="same", activation="relu", name=f"conv{i}", dtype=p)
            for i, w in enumerate(widths, 1)
        ]
        self.conv_mask = keras.layers.Conv2D(1, 5, padding="same", name="conv_mask", dtype=p)
        self.pad = keras.layers.ZeroPadding2D(1, name="pad", dtype=p)
        self.conv7 = keras.layers.Conv2D(64, 5, strides=4, activation="relu", name="conv7", dtype=p)
        self.conv8 = keras.layers.Conv2D(32, 5, strides=4, activation="relu", name="conv8", dtype=p)
        self.flatten = keras.layers.Flatten(dtype=p)
        self.fc1 = keras.layers.Dense(1024, name="fc1", dtype=p)
        self.fc2 = keras.layers.Dense(1, name="fc2", dtype=p)

    @property
    def feature_size(self) -> int:
        """Height and width of conv8's output, which fixes the dense layer's input."""
        return _strided_size(_strided_size(self.crop_size))

    def _check_size(self, shape):
        h, w = shape[1], shape[2]
        if (h is not None and h != self.crop_size) or (w is not None and w != self.crop_size):
            raise ValueError(
                f"The discriminator was built for {self.crop_size}x{self.crop_size} crops "
                f"(its dense layer takes 32x{self.feature_size}x{self.feature_size} features), "
                f"but got an input of {h}x{w}. Crop or resize to {self.crop_size}, "
                f"or build it with Discriminator(crop_size={h})."
            )

    def build(self, input_shape):
        self._check_size(input_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        self._check_size(inputs.shape)
        x = ops.cast(inputs, self.compute_dtype)
        for conv in self.convs:
            x = conv(x)
        d_map = self.conv_mask(x)
        x = self.conv7(self.pad(x * d_map))
        x = self.conv8(self.pad(x))
        logit = self.fc2(self.fc1(self.flatten(x)))
        return {"map": ops.cast(d_map, "float32"), "logit": ops.cast(logit, "float32")}

    def get_config(self):
        config = super().get_config()
        config.update({"crop_size": self.crop_size})
        return config
