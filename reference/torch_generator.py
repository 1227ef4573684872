"""A PyTorch reference of the authors' generator (docs/architecture.md, sections 2, 3 and 7).

Module names follow the released checkpoint (`det_conv0.0`, `conv_i.0`,
`deconv1.0`, ...) so its `state_dict` has `gen.pkl`'s keys. It works on BGR
images in [0, 1], NCHW, as the authors' code does. Used by the parity tests
and the benchmarks; it is not part of the library.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin, cout, k, stride=1, pad=None, dilation=1, relu=True):
    pad = (k - 1) // 2 * dilation if pad is None else pad
    layers = [nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _deconv(cin, cout):
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, 2, 1),
        nn.ReflectionPad2d((1, 0, 1, 0)),
        nn.AvgPool2d(2, stride=1),
        nn.ReLU(),
    )


class ReferenceGenerator(nn.Module):
    """Attentive-recurrent network (4 steps) + contextual autoencoder.

    See docs/architecture.md, sections 2 and 3.
    """

    def __init__(self):
        super().__init__()
        self.det_conv0 = _conv(4, 32, 3)
        for i in range(1, 6):
            block = nn.Sequential(
                nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU()
            )
            setattr(self, f"det_conv{i}", block)
        self.conv_i = nn.Sequential(nn.Conv2d(64, 32, 3, 1, 1), nn.Sigmoid())
        self.conv_f = nn.Sequential(nn.Conv2d(64, 32, 3, 1, 1), nn.Sigmoid())
        self.conv_g = nn.Sequential(nn.Conv2d(64, 32, 3, 1, 1), nn.Tanh())
        self.conv_o = nn.Sequential(nn.Conv2d(64, 32, 3, 1, 1), nn.Sigmoid())
        self.det_conv_mask = nn.Sequential(nn.Conv2d(32, 1, 3, 1, 1))
        self.conv1 = _conv(4, 64, 5)
        self.conv2 = _conv(64, 128, 3, stride=2, pad=1)
        self.conv3 = _conv(128, 128, 3)
        self.conv4 = _conv(128, 256, 3, stride=2, pad=1)
        self.conv5 = _conv(256, 256, 3)
        self.conv6 = _conv(256, 256, 3)
        for i, d in enumerate((2, 4, 8, 16), 1):
            setattr(self, f"diconv{i}", _conv(256, 256, 3, dilation=d))
        self.conv7 = _conv(256, 256, 3)
        self.conv8 = _conv(256, 256, 3)
        self.deconv1 = _deconv(256, 128)
        self.conv9 = _conv(128, 128, 3)
        self.deconv2 = _deconv(128, 64)
        self.conv10 = _conv(64, 32, 3)
        self.outframe1 = _conv(256, 3, 3)
        self.outframe2 = _conv(128, 3, 3)
        self.output = _conv(32, 3, 3, relu=False)

    def forward(self, image):
        b, _, h, w = image.shape
        mask = torch.full((b, 1, h, w), 0.5, dtype=image.dtype, device=image.device)
        hidden = torch.zeros((b, 32, h, w), dtype=image.dtype, device=image.device)
        cell = torch.zeros_like(hidden)
        masks = []
        for _ in range(4):
            x = self.det_conv0(torch.cat((image, mask), 1))
            for i in range(1, 6):
                x = torch.relu(getattr(self, f"det_conv{i}")(x) + x)
            x = torch.cat((x, hidden), 1)
            i_, f_, g_, o_ = self.conv_i(x), self.conv_f(x), self.conv_g(x), self.conv_o(x)
            cell = f_ * cell + i_ * g_
            hidden = o_ * torch.tanh(cell)
            mask = self.det_conv_mask(hidden)
            masks.append(mask)
        x = self.conv1(torch.cat((image, mask), 1))
        res1 = x
        x = self.conv3(self.conv2(x))
        res2 = x
        x = self.conv6(self.conv5(self.conv4(x)))
        for i in range(1, 5):
            x = getattr(self, f"diconv{i}")(x)
        x = self.conv8(self.conv7(x))
        frame1 = self.outframe1(x)
        x = self.conv9(self.deconv1(x) + res2)
        frame2 = self.outframe2(x)
        x = self.output(self.conv10(self.deconv2(x) + res1))
        return masks, frame1, frame2, x


def he_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """He (Kaiming normal) weights and small random biases, reproducibly.

    PyTorch's default init shrinks activations layer by layer, which would
    make a parity test compare near-constant outputs; He keeps them lively.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.ConvTranspose2d):
                fan_in = (
                    module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3] / 4
                )
            elif isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
            else:
                continue
            std = (2.0 / fan_in) ** 0.5
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
            module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.01)
    return model


def save_random_checkpoint(path, seed: int = 0, legacy: bool = False) -> ReferenceGenerator:
    """Saves a He-initialised reference as a `gen.pkl`-style state_dict; returns the reference.

    `legacy=True` writes the pre-zip `torch.save` format that `gen.pkl` uses.
    """
    reference = he_init_(ReferenceGenerator(), seed=seed).eval()
    torch.save(reference.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    return reference


def run_reference(model: ReferenceGenerator, rgb_nhwc):
    """Feeds RGB NHWC numpy in [0, 1] as the authors do (BGR, NCHW); returns NHWC RGB numpy."""
    import numpy as np

    bgr = torch.from_numpy(np.ascontiguousarray(rgb_nhwc[..., ::-1].transpose(0, 3, 1, 2)))
    with torch.no_grad():
        masks, s1, s2, out = model(bgr)

    def rgb(t):
        return t.numpy().transpose(0, 2, 3, 1)[..., ::-1]

    return {
        "attention": [m.numpy().transpose(0, 2, 3, 1) for m in masks],
        "outputs": [rgb(s1), rgb(s2), rgb(out)],
    }
