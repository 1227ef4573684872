"""A PyTorch reference of the Attentive GAN's training step (docs/architecture.md, sections 4, 5).

The same networks, losses and update order as `tf_deraindrop.training.gan.AttentiveGAN`:
the generator of `reference/torch_generator.py`, the discriminator of section 4, the VGG16
relu1_1..relu2_2 perceptual term, and Adam for both networks. One step is one
discriminator update, then one generator update against the updated discriminator.
Everything works on BGR images in [0, 1], NCHW, as the authors' code does; the losses
do not depend on the channel order except the perceptual one, whose VGG takes BGR.

Weights come from the Keras models (`discriminator_from_keras`, `vgg_from_keras`), so
that both implementations start identical. Used by benchmarks/training/bench_train.py; it is
not part of the library.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from reference.torch_generator import ReferenceGenerator

#: Caffe-style VGG16 channel means (BGR, 0..255), as tf_deraindrop.losses.VGG_BGR_MEAN.
VGG_BGR_MEAN = (103.939, 116.779, 123.68)
#: As tf_deraindrop.losses.VGG_FEATURE_SCALE.
VGG_FEATURE_SCALE = 1.0 / (255.0 * 0.226)


def _strided_size(size: int) -> int:
    return (size + 2 - 5) // 4 + 1


class ReferenceDiscriminator(nn.Module):
    """Six 5x5 convs, the map `D_map`, two strided convs and two dense layers to a logit."""

    def __init__(self, crop_size: int = 224):
        super().__init__()
        widths = (3, 8, 16, 64, 128, 128, 128)
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, 5, 1, 2) for cin, cout in zip(widths[:-1], widths[1:])
        )
        self.conv_mask = nn.Conv2d(128, 1, 5, 1, 2)
        self.conv7 = nn.Conv2d(128, 64, 5, 4, 1)
        self.conv8 = nn.Conv2d(64, 32, 5, 4, 1)
        s = _strided_size(_strided_size(crop_size))
        self.fc1 = nn.Linear(32 * s * s, 1024)
        self.fc2 = nn.Linear(1024, 1)

    def forward(self, image):
        x = image
        for conv in self.convs:
            x = torch.relu(conv(x))
        d_map = self.conv_mask(x)
        x = torch.relu(self.conv7(x * d_map))
        x = torch.relu(self.conv8(x))
        return d_map, self.fc2(self.fc1(torch.flatten(x, 1)))


class ReferenceVGGFeatures(nn.Module):
    """VGG16 up to relu2_2, returning relu1_1, relu1_2, relu2_1, relu2_2 (frozen)."""

    def __init__(self):
        super().__init__()
        self.conv1_1 = nn.Conv2d(3, 64, 3, 1, 1)
        self.conv1_2 = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv2_1 = nn.Conv2d(64, 128, 3, 1, 1)
        self.conv2_2 = nn.Conv2d(128, 128, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(VGG_BGR_MEAN).reshape(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, bgr):
        x = bgr * 255.0 - self.mean
        f1 = torch.relu(self.conv1_1(x))
        f2 = torch.relu(self.conv1_2(f1))
        f3 = torch.relu(self.conv2_1(F.max_pool2d(f2, 2)))
        f4 = torch.relu(self.conv2_2(f3))
        return [f * VGG_FEATURE_SCALE for f in (f1, f2, f3, f4)]


def _copy_conv(conv: nn.Conv2d, kernel, bias) -> None:
    # Keras kernels are (kh, kw, in, out); PyTorch's are (out, in, kh, kw).
    with torch.no_grad():
        weight = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(np.asarray(bias)))


def discriminator_from_keras(keras_discriminator) -> ReferenceDiscriminator:
    """A `ReferenceDiscriminator` with the weights of a built Keras `Discriminator`.

    The Keras discriminator sees RGB and this one BGR: the losses are the same
    either way because the first conv's input channels are flipped here.
    """
    d = ReferenceDiscriminator(keras_discriminator.crop_size)
    first = True
    for conv, layer in zip(d.convs, keras_discriminator.convs):
        kernel, bias = (np.asarray(v) for v in layer.get_weights())
        if first:
            kernel, first = kernel[:, :, ::-1, :], False
        _copy_conv(conv, kernel, bias)
    for name in ("conv_mask", "conv7", "conv8"):
        _copy_conv(getattr(d, name), *getattr(keras_discriminator, name).get_weights())
    # Keras flattens (s, s, 32) in HWC order; PyTorch flattens (32, s, s) in CHW order.
    kernel, bias = keras_discriminator.fc1.get_weights()
    s = keras_discriminator.feature_size
    kernel = kernel.reshape(s, s, 32, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1)
    with torch.no_grad():
        d.fc1.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
        d.fc1.bias.copy_(torch.from_numpy(bias))
        kernel, bias = keras_discriminator.fc2.get_weights()
        d.fc2.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
        d.fc2.bias.copy_(torch.from_numpy(bias))
    return d


def vgg_from_keras(perceptual_loss) -> ReferenceVGGFeatures:
    """A `ReferenceVGGFeatures` with the weights of a `tf_deraindrop.losses.PerceptualLoss`.

    Keras' VGG16 already takes BGR (the loss flips RGB first), so kernels copy as they are.
    """
    vgg = ReferenceVGGFeatures()
    names = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2")
    for conv, name in zip((vgg.conv1_1, vgg.conv1_2, vgg.conv2_1, vgg.conv2_2), names):
        _copy_conv(conv, *perceptual_loss.features.get_layer(name).get_weights())
    return vgg


def _mse(a, b):
    return torch.mean(torch.square(a - b), dim=tuple(range(1, a.dim())))


#: Keras' Adam defaults.
ADAM_BETA_2, ADAM_EPSILON = 0.999, 1e-7


def _adam(params, lr: float, beta_1: float):
    # The fused CPU kernel is PyTorch's fastest; older versions fall back to the for-each one.
    params = list(params)
    try:
        return torch.optim.Adam(params, lr, betas=(beta_1, ADAM_BETA_2), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr, betas=(beta_1, ADAM_BETA_2), foreach=True)


def _keras_epsilon(optimizer, step: int) -> None:
    """Makes PyTorch's Adam step `step` (from 1) the step Keras' Adam takes.

    Keras adds epsilon to `sqrt(v)`, PyTorch to `sqrt(v / (1 - beta_2^t))`; the
    updates are the same with PyTorch's epsilon divided by `sqrt(1 - beta_2^t)`.
    Early on that is 30x Keras' epsilon, which matters for the tiny gradients
    of a freshly initialised discriminator.
    """
    for group in optimizer.param_groups:
        group["eps"] = ADAM_EPSILON / (1.0 - ADAM_BETA_2**step) ** 0.5


class ReferenceGANStep:
    """One Attentive GAN training step in PyTorch, as `AttentiveGAN.train_step` does it.

    Args:
        generator: a `ReferenceGenerator`.
        discriminator: a `ReferenceDiscriminator`.
        vgg: a `ReferenceVGGFeatures`, or `None` to train without `L_P`.
        lr, beta_1: both Adams' learning rate and first-moment decay.
        theta, lambdas, gan_weight, gamma: the paper's loss weights (as `AttentiveGAN.compile`).

    Example:
        >>> step = ReferenceGANStep(ReferenceGenerator(), ReferenceDiscriminator(64), None)
        >>> logs = step(rainy_bgr, clean_bgr, mask)  # doctest: +SKIP
    """

    def __init__(
        self,
        generator: ReferenceGenerator,
        discriminator: ReferenceDiscriminator,
        vgg: ReferenceVGGFeatures | None,
        lr: float = 2e-4,
        beta_1: float = 0.5,
        theta: float = 0.8,
        lambdas=(0.6, 0.8, 1.0),
        gan_weight: float = 0.01,
        gamma: float = 0.05,
    ):
        self.generator = generator.train()
        self.discriminator = discriminator.train()
        self.vgg = vgg.eval() if vgg is not None else None
        self.g_optimizer = _adam(generator.parameters(), lr, beta_1)
        self.d_optimizer = _adam(discriminator.parameters(), lr, beta_1)
        self.theta, self.lambdas = theta, tuple(lambdas)
        self.gan_weight, self.gamma = gan_weight, gamma
        self.steps = 0

    def __call__(self, rainy, clean, mask) -> dict[str, float]:
        """Runs one step on BGR NCHW `rainy`, `clean` and the `(B, 1, H, W)` mask."""
        self.steps += 1
        for optimizer in (self.g_optimizer, self.d_optimizer):
            _keras_epsilon(optimizer, self.steps)
        masks, side_quarter, side_half, derained = self.generator(rainy)

        # Discriminator: L_D = L_GAN_D(R, O) + gamma * L_map(D_map(O), D_map(R), A_N).
        fake, final_attention = derained.detach(), masks[-1].detach()
        real_map, real_logit = self.discriminator(clean)
        fake_map, fake_logit = self.discriminator(fake)
        d_adversarial = F.softplus(-real_logit).flatten() + F.softplus(fake_logit).flatten()
        map_term = _mse(fake_map, final_attention) + _mse(real_map, torch.zeros_like(real_map))
        d_total = d_adversarial + self.gamma * map_term
        self.d_optimizer.zero_grad(set_to_none=True)
        d_total.mean().backward()
        self.d_optimizer.step()

        # Generator: L_G = gan_weight * L_GAN(O) + L_ATT + L_M + L_P, against the updated D,
        # whose weight gradients are not needed (Keras does not compute them either).
        self.discriminator.requires_grad_(False)
        try:
            _, fake_logit = self.discriminator(derained)
        finally:
            self.discriminator.requires_grad_(True)
        g_adversarial = F.softplus(-fake_logit).flatten()
        n = len(masks)
        attention = sum(self.theta ** (n - t) * _mse(a, mask) for t, a in enumerate(masks, 1))
        multiscale = sum(
            lam * _mse(s, F.interpolate(clean, size=s.shape[2:], mode="bilinear"))
            for lam, s in zip(self.lambdas, (side_quarter, side_half, derained))
        )
        g_total = self.gan_weight * g_adversarial + attention + multiscale
        logs = {"attention": attention, "multiscale": multiscale}
        if self.vgg is not None:
            with torch.no_grad():
                targets = self.vgg(clean)
            features = self.vgg(derained)
            perceptual = sum(_mse(a, b) for a, b in zip(features, targets)) / len(features)
            g_total = g_total + perceptual
            logs["perceptual"] = perceptual
        self.g_optimizer.zero_grad(set_to_none=True)
        g_total.mean().backward()
        self.g_optimizer.step()

        logs.update(
            g_adversarial=g_adversarial,
            g_total=g_total,
            d_adversarial=d_adversarial,
            map=map_term,
            d_total=d_total,
        )
        return {name: float(value.detach().mean()) for name, value in logs.items()}
