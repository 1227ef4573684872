"""The shipped default student (trained on synthetic drops only): present, small, as measured."""

from __future__ import annotations

import os

import numpy as np

from tf_deraindrop.weights import default_model_card, default_weights


def test_default_weights_are_shipped_with_their_card():
    path = default_weights()
    assert path is not None and path.endswith("default_student.keras")
    assert os.path.getsize(path) < 1_000_000  # a few hundred KB
    card = default_model_card()
    for key in ("command", "steps", "real_pair", "rainy_input", "machine"):
        assert key in card, key
    # Shipped only because it beats the rainy input on the real pair in both metrics.
    assert card["real_pair"]["psnr"] >= card["rainy_input"]["psnr"] + 1.0
    assert card["real_pair"]["ssim"] > card["rainy_input"]["ssim"]


def test_default_weights_score_what_the_card_says(raindrop_pairs_dir):
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.metrics import psnr_y, ssim_y
    from tf_deraindrop.models import LiteGenerator
    from tf_deraindrop.utils.images import read_image, to_uint8

    generator = load_generator(default_weights())
    assert isinstance(generator, LiteGenerator)
    rainy = read_image(raindrop_pairs_dir / "data" / "0_rain.png")
    clean = to_uint8(read_image(raindrop_pairs_dir / "gt" / "0_clean.png"))
    output = generator(rainy[None].astype(np.float32), training=False)["outputs"][-1][0]
    output = to_uint8(np.clip(np.asarray(output), 0.0, 1.0))
    card = default_model_card()
    assert abs(psnr_y(output, clean) - card["real_pair"]["psnr"]) < 0.02
    assert abs(ssim_y(output, clean) - card["real_pair"]["ssim"]) < 0.0005
