"""The default weights shipped with the package: a lite student trained on synthetic drops only.

`default_weights()` is the path of `default_student.keras` (a
`tf_deraindrop.models.LiteGenerator`, a few hundred KB), or None where the
file is not installed; `default_model_card()` is its card
(`default_student.json`): the training command and steps, and the measured
PSNR/SSIM on the real test pair next to the rainy input's, and the machine.

Example:
    >>> from tf_deraindrop.weights import default_model_card, default_weights
    >>> path = default_weights()  # then load it as any generator .keras file
    >>> default_model_card()["real_pair"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os

__all__ = ["default_model_card", "default_weights", "describe_default"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_WEIGHTS = os.path.join(_HERE, "default_student.keras")
_CARD = os.path.join(_HERE, "default_student.json")


def default_weights() -> str | None:
    """The path of the shipped default model (`.keras`), or None if it is not installed."""
    return _WEIGHTS if os.path.isfile(_WEIGHTS) else None


def default_model_card() -> dict:
    """The shipped model's card (how it was trained, what it scores), or `{}` without one."""
    if not os.path.isfile(_CARD):
        return {}
    with open(_CARD, encoding="utf-8") as f:
        return json.load(f)


def describe_default() -> str:
    """One line on the default model: what it is and what it scores against the rainy input."""
    card = default_model_card()
    real, rainy = card.get("real_pair"), card.get("rainy_input")
    if not real or not rainy:
        return "the built-in lite student (trained on synthetic raindrops only)"
    gain = real["psnr"] - rainy["psnr"]
    return (
        "the built-in lite student, trained on synthetic raindrops only: "
        f"{real['psnr']:.2f} dB / {real['ssim']:.4f} SSIM on a real rainy/clean pair, against "
        f"the rainy photo's {rainy['psnr']:.2f} dB / {rainy['ssim']:.4f} ({gain:+.2f} dB). "
        "A modest gain: large drops stay visible and photos come out slightly darker. "
        "For the authors' quality pass --weights gen.pkl"
    )
