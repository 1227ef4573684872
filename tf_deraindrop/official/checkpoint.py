"""Importing the authors' released PyTorch generator (`gen.pkl`).

The checkpoint is a `state_dict` saved by PyTorch 0.3.1 in the legacy
(non-zip) `torch.save` format; newer saves use the zip format. Both load
through `torch.load`. The authors feed BGR images; this project is RGB, so
the channels of the image inputs and of the three image outputs are
permuted on the way in, and the imported model gives the authors' numbers
on RGB. Which tensor goes to which layer, and how, is
`tf_deraindrop.official.names` (docs/architecture.md, section 7).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from tf_deraindrop.models import Generator
from tf_deraindrop.official.names import generator_layers, keras_weights, official_shapes
from tf_deraindrop.utils.sniff import file_kind

__all__ = [
    "CheckpointError",
    "assign_state_dict",
    "check_state_dict",
    "import_official_checkpoint",
    "official_shapes",
    "read_state_dict",
]


class CheckpointError(ValueError):
    """The file is not the authors' generator checkpoint; the message says why."""


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
    kind = file_kind(path)
    if kind not in ("a Python pickle", "a PyTorch checkpoint (zip)"):
        raise CheckpointError(
            f"{path} is {kind}, not a PyTorch checkpoint: give the authors' gen.pkl"
        )
    torch = _torch_module()
    try:
        with warnings.catch_warnings():
            # Said of a pickle that is then refused anyway, with its own message.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(_unsafe_load_message(path, err)) from err
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


def _unsafe_load_message(path: str, err: Exception) -> str:
    """Why `torch.load(weights_only=True)` refused `path`, without torch's advice to unpickle."""
    text = str(err)
    if "weights_only" in text or "Unsupported global" in text:
        return (
            f"{path} holds Python objects besides tensors; they are not loaded, since "
            "unpickling them could run any code. Save the generator's state_dict "
            "(torch.save(model.state_dict(), 'gen.pkl')) and give that file."
        )
    first = text.splitlines()[0] if text else ""
    return f"{path} is not a PyTorch checkpoint that can be read ({type(err).__name__}: {first})"


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


def assign_state_dict(generator: Generator, state: dict[str, np.ndarray]) -> Generator:
    """Copies a checked `state_dict` into a built `Generator`."""
    check_state_dict(state)
    for name, layer in generator_layers(generator).items():
        kernel, bias = keras_weights(name, state[f"{name}.weight"], state[f"{name}.bias"])
        layer.set_weights([kernel, bias])
    return generator


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
