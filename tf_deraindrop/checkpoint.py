"""Importing the authors' released PyTorch generator (`gen.pkl`).

The checkpoint is a `state_dict` saved by PyTorch 0.3.1 in the legacy
(non-zip) `torch.save` format; newer saves use the zip format. Both load
through `torch.load`. The authors feed BGR images; this project is RGB, so
the channels of the image inputs and of the three image outputs are
permuted here, and the imported model gives the authors' numbers on RGB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from tf_deraindrop.models import Generator


class CheckpointError(ValueError):
    """The file is not the authors' generator checkpoint; the message says why."""


@dataclass(frozen=True)
class _Conv:
    """One convolution of the checkpoint: name prefix, channels in/out, kernel, transposed."""

    name: str
    cin: int
    cout: int
    k: int
    transposed: bool = False


def _official_layout() -> list[_Conv]:
    layout = [_Conv("det_conv0.0", 4, 32, 3)]
    for i in range(1, 6):
        layout += [_Conv(f"det_conv{i}.0", 32, 32, 3), _Conv(f"det_conv{i}.2", 32, 32, 3)]
    layout += [_Conv(f"conv_{g}.0", 64, 32, 3) for g in "ifgo"]
    layout += [_Conv("det_conv_mask.0", 32, 1, 3)]
    layout += [
        _Conv("conv1.0", 4, 64, 5),
        _Conv("conv2.0", 64, 128, 3),
        _Conv("conv3.0", 128, 128, 3),
        _Conv("conv4.0", 128, 256, 3),
        _Conv("conv5.0", 256, 256, 3),
        _Conv("conv6.0", 256, 256, 3),
    ]
    layout += [_Conv(f"diconv{i}.0", 256, 256, 3) for i in range(1, 5)]
    layout += [
        _Conv("conv7.0", 256, 256, 3),
        _Conv("conv8.0", 256, 256, 3),
        _Conv("deconv1.0", 256, 128, 4, transposed=True),
        _Conv("conv9.0", 128, 128, 3),
        _Conv("deconv2.0", 128, 64, 4, transposed=True),
        _Conv("conv10.0", 64, 32, 3),
        _Conv("outframe1.0", 256, 3, 3),
        _Conv("outframe2.0", 128, 3, 3),
        _Conv("output.0", 32, 3, 3),
    ]
    return layout


OFFICIAL_LAYOUT = _official_layout()


def official_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of `gen.pkl` with its PyTorch shape (70 tensors)."""
    shapes = {}
    for c in OFFICIAL_LAYOUT:
        w = (c.cin, c.cout, c.k, c.k) if c.transposed else (c.cout, c.cin, c.k, c.k)
        shapes[f"{c.name}.weight"] = w
        shapes[f"{c.name}.bias"] = (c.cout,)
    return shapes


# Image channels enter det_conv0 and conv1 as B, G, R then the map: reorder to
# R, G, B, map. The outputs come out as B, G, R: reorder to R, G, B.
_RGB_FROM_BGR_IN = [2, 1, 0, 3]
_RGB_FROM_BGR_OUT = [2, 1, 0]
_IMAGE_IN = ("det_conv0.0", "conv1.0")
_IMAGE_OUT = ("outframe1.0", "outframe2.0", "output.0")


def _torch_module():
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            "Reading the authors' PyTorch checkpoint needs PyTorch: "
            "pip install 'tf-deraindrop[torch]' (or pip install torch)."
        ) from err
    return torch


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch `state_dict` file (legacy or zip format) into numpy arrays.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a PyTorch checkpoint, or not a dict of tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    torch = _torch_module()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint that can be read safely "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict.")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor."
            )
        # DataParallel saves prefix every name with "module.".
        name = key[len("module.") :] if key.startswith("module.") else key
        state[name] = value.detach().cpu().float().numpy()
    return state


def check_state_dict(state: dict[str, np.ndarray], source: str = "checkpoint") -> None:
    """Raises `CheckpointError` naming every missing, unexpected or misshapen tensor."""
    expected = official_shapes()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    mismatched = [
        f"{k} is {tuple(state[k].shape)}, expected {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise CheckpointError(
            f"{source} is not the Attentive GAN generator:\n  " + "\n  ".join(problems)
        )


def _keras_kernel(state, name):
    # Conv2d [out, in, kh, kw] -> [kh, kw, in, out];
    # ConvTranspose2d [in, out, kh, kw] -> [kh, kw, out, in]: the same transpose.
    kernel = np.transpose(state[f"{name}.weight"], (2, 3, 1, 0))
    bias = state[f"{name}.bias"]
    if name in _IMAGE_IN:
        kernel = kernel[:, :, _RGB_FROM_BGR_IN, :]
    if name in _IMAGE_OUT:
        kernel = kernel[..., _RGB_FROM_BGR_OUT]
        bias = bias[_RGB_FROM_BGR_OUT]
    return np.ascontiguousarray(kernel), np.ascontiguousarray(bias)


def assign_state_dict(generator: Generator, state: dict[str, np.ndarray]) -> Generator:
    """Copies a checked `state_dict` into a built `Generator`."""
    check_state_dict(state)
    g = generator

    def put(layer, name):
        layer.set_weights(list(_keras_kernel(state, name)))

    put(g.det_conv0, "det_conv0.0")
    for i, block in enumerate(g.det_blocks, 1):
        put(block.conv_a, f"det_conv{i}.0")
        put(block.conv_b, f"det_conv{i}.2")
    for gate, conv in g.lstm.gates.items():
        put(conv, f"conv_{gate}.0")
    put(g.det_conv_mask, "det_conv_mask.0")
    for i in range(1, 11):
        put(getattr(g, f"conv{i}"), f"conv{i}.0")
    for i, layer in enumerate(g.diconvs, 1):
        put(layer, f"diconv{i}.0")
    put(g.deconv1.transposed_conv, "deconv1.0")
    put(g.deconv2.transposed_conv, "deconv2.0")
    put(g.outframe1, "outframe1.0")
    put(g.outframe2, "outframe2.0")
    put(g.output_conv, "output.0")
    return g


def import_official_checkpoint(path: str | os.PathLike, dtype: str | None = None) -> Generator:
    """Builds a `Generator` holding the authors' released weights.

    Args:
        path: the authors' `gen.pkl` (or any `torch.save`d state_dict of the
            same network, legacy or zip format).
        dtype: optional Keras dtype policy for the generator (e.g.
            `"mixed_float16"`); weights stay float32.

    Returns:
        A built `Generator` that, fed RGB, gives the authors' results on BGR.

    Raises:
        FileNotFoundError, CheckpointError, ImportError (no PyTorch).

    Example:
        >>> generator = import_official_checkpoint("gen.pkl")  # doctest: +SKIP
    """
    state = read_state_dict(path)
    check_state_dict(state, source=os.fspath(path))
    generator = Generator(dtype=dtype) if dtype else Generator()
    generator.build((None, None, None, 3))
    return assign_state_dict(generator, state)
