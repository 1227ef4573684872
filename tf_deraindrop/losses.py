"""The Attentive GAN's losses (docs/architecture.md, section 5), in `keras.ops`.

Every loss returns one value per example, shape `(B,)`, so that the caller
chooses the reduction: a plain mean on one device, or a sum divided by the
global batch size under a distribution strategy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
from keras import ops

#: ImageNet channel means of the Caffe-style VGG16 weights Keras ships, in BGR, on 0..255.
VGG_BGR_MEAN = (103.939, 116.779, 123.68)
#: Layers the authors take features from: relu1_1, relu1_2, relu2_1, relu2_2.
VGG_FEATURE_LAYERS = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2")
#: Keras' VGG16 expects Caffe input (0..255 less the mean); a torchvision VGG,
#: which the authors used, expects (x - mean) / std on 0..1 with std about
#: 0.226. Dividing the features by 255 * 0.226 puts the perceptual loss on the
#: scale of the authors' loss weights.
VGG_FEATURE_SCALE = 1.0 / (255.0 * 0.226)


def _per_example_mse(a, b):
    a = ops.cast(a, "float32")
    b = ops.cast(b, "float32")
    return ops.mean(ops.square(a - b), axis=tuple(range(1, len(a.shape))))


def _resize_to(x, like):
    size = tuple(like.shape[1:3])
    if tuple(x.shape[1:3]) == size and None not in size:
        return x
    if None in size:
        size = tuple(ops.shape(like)[1:3])
    return ops.image.resize(x, size, interpolation="bilinear", antialias=False)


def attention_loss(attention_maps: Sequence, mask, theta: float = 0.8):
    """`L_ATT = sum_t theta^(N - t) * MSE(A_t, M)`: later steps weigh more.

    Args:
        attention_maps: `[A_1, ..., A_N]`, each `(B, H, W, 1)`.
        mask: the binary raindrop mask `M`, `(B, H, W, 1)`, 1 on drops.
        theta: decay per step back in time (0.8 in the paper).

    Returns:
        `(B,)` per-example loss.
    """
    n = len(attention_maps)
    return sum(
        theta ** (n - t) * _per_example_mse(a, mask) for t, a in enumerate(attention_maps, 1)
    )


def multiscale_loss(outputs: Sequence, clean, lambdas: Sequence[float] = (0.6, 0.8, 1.0)):
    """`L_M = sum_i lambda_i * MSE(S_i, T_i)`, `T_i` the clean image resized to `S_i`.

    Args:
        outputs: `[S_quarter, S_half, O]` from the generator.
        clean: the clean image `(B, H, W, 3)` in [0, 1].
        lambdas: weights of the 1/4, 1/2 and full-size terms (0.6, 0.8, 1.0).

    Returns:
        `(B,)` per-example loss.
    """
    if len(outputs) != len(lambdas):
        raise ValueError(f"{len(outputs)} outputs but {len(lambdas)} lambdas.")
    clean = ops.cast(clean, "float32")
    return sum(lam * _per_example_mse(s, _resize_to(clean, s)) for lam, s in zip(lambdas, outputs))


def generator_adversarial_loss(fake_logit, saturating: bool = False):
    """The generator's GAN term on the discriminator's logit for `O`.

    `saturating=False` (default) is the non-saturating `-log D(O)`; `True` is
    the paper's `log(1 - D(O))`, which gives vanishing gradients early on.

    Returns:
        `(B,)` per-example loss.
    """
    logit = ops.reshape(ops.cast(fake_logit, "float32"), (-1,))
    if saturating:
        return -ops.softplus(logit)  # log(1 - sigmoid(z)) = -softplus(z)
    return ops.softplus(-logit)  # -log(sigmoid(z)) = softplus(-z)


def discriminator_adversarial_loss(real_logit, fake_logit):
    """`-log D(R) - log(1 - D(O))` on logits.

    Returns:
        `(B,)` per-example loss.
    """
    real = ops.reshape(ops.cast(real_logit, "float32"), (-1,))
    fake = ops.reshape(ops.cast(fake_logit, "float32"), (-1,))
    return ops.softplus(-real) + ops.softplus(fake)


def map_loss(fake_map, real_map, final_attention):
    """`L_map = MSE(D_map(O), A_N) + MSE(D_map(R), 0)`.

    The discriminator's map should find the raindrop regions in a generated
    image (where the generator attended) and nothing in a clean one.

    Args:
        fake_map: `D_map(O)`, `(B, h, w, 1)`.
        real_map: `D_map(R)`, `(B, h, w, 1)`.
        final_attention: `A_N`, resized to the map's size if it differs.

    Returns:
        `(B,)` per-example loss.
    """
    target = _resize_to(ops.cast(final_attention, "float32"), fake_map)
    return _per_example_mse(fake_map, target) + _per_example_mse(real_map, ops.zeros_like(real_map))


class VGGWeightsError(RuntimeError):
    """VGG16 weights could not be had; the message says how to pass a local file."""


@keras.saving.register_keras_serializable(package="tf_deraindrop")
class PerceptualLoss(keras.layers.Layer):
    """`L_P = MSE(VGG(O), VGG(T))` on VGG16 relu1_1, relu1_2, relu2_1, relu2_2.

    Images come in as RGB in [0, 1]; the layer turns them into what Keras'
    ImageNet VGG16 was trained on (BGR, 0..255, less the channel means). The
    loss is the mean over the four layers of each layer's feature MSE, with
    the features scaled by `VGG_FEATURE_SCALE` (see there). The network is
    frozen.

    Args:
        weights: `"imagenet"` (Keras downloads and caches them), a path to a
            local VGG16 `.h5` / `.weights.h5` file (with or without the top),
            or `None` for random weights (tests only).

    Raises:
        VGGWeightsError: the ImageNet weights cannot be downloaded or the file
            is missing; never falls back to random weights silently.

    Example:
        >>> loss = PerceptualLoss(weights=None)
        >>> loss(keras.ops.zeros((2, 32, 32, 3)), keras.ops.ones((2, 32, 32, 3))).shape
        (2,)
    """

    def __init__(self, weights: str | None = "imagenet", **kwargs):
        super().__init__(**kwargs)
        self.weights_source = weights
        self.features = build_vgg_features(weights)
        self.features.trainable = False

    def features_of(self, image):
        x = ops.cast(image, "float32") * 255.0
        x = ops.flip(x, axis=-1) - ops.convert_to_tensor(VGG_BGR_MEAN, dtype="float32")
        return [f * VGG_FEATURE_SCALE for f in self.features(x, training=False)]

    def call(self, output, clean):
        pairs = zip(self.features_of(output), self.features_of(clean))
        terms = [_per_example_mse(a, ops.stop_gradient(b)) for a, b in pairs]
        return sum(terms) / len(terms)

    def get_config(self):
        config = super().get_config()
        config.update({"weights": self.weights_source})
        return config


def build_vgg_features(weights: str | None = "imagenet") -> keras.Model:
    """VGG16 up to block2_conv2, returning the four feature maps the loss uses.

    Args:
        weights: `"imagenet"`, a local weights file, or `None`.

    Raises:
        VGGWeightsError: when the weights cannot be had.
    """
    if weights not in (None, "imagenet"):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise VGGWeightsError(f"VGG16 weights file not found: {path}")
        vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
        try:
            vgg.load_weights(path, skip_mismatch=False)
        except Exception:
            # A file with the classifier top: load it into the full network,
            # whose convolutional layers are the same objects by name.
            full = keras.applications.VGG16(include_top=True, weights=path)
            for layer in vgg.layers:
                if layer.weights:
                    layer.set_weights(full.get_layer(layer.name).get_weights())
    else:
        try:
            vgg = keras.applications.VGG16(
                include_top=False, weights=weights, input_shape=(None, None, 3)
            )
        except Exception as err:  # no network, blocked proxy, bad cache
            raise VGGWeightsError(
                "Could not get the VGG16 ImageNet weights for the perceptual loss "
                f"({type(err).__name__}: {err}). Without a network, download "
                "'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5' elsewhere and pass "
                "its path (--vgg-weights PATH, or PerceptualLoss(weights=PATH)), or put it "
                "in ~/.keras/models/. To train without the perceptual term, pass "
                "--vgg-weights none."
            ) from err
    outputs = [vgg.get_layer(name).output for name in VGG_FEATURE_LAYERS]
    return keras.Model(vgg.input, outputs, name="vgg16_features")
