"""The one map between the authors' tensor names and the generator's layers (no PyTorch)."""

from __future__ import annotations

import numpy as np
import pytest

from tf_deraindrop.official.names import (
    IMAGE_IN,
    IMAGE_OUT,
    OFFICIAL_LAYOUT,
    generator_layers,
    keras_weights,
    official_shapes,
    official_weights,
)


def _random_state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in official_shapes().items()}


@pytest.fixture(scope="module")
def generator():
    from tf_deraindrop.models import Generator

    generator = Generator()
    generator.build((None, None, None, 3))
    return generator


def test_layout_is_the_authors_checkpoint(generator):
    shapes = official_shapes()
    assert len(shapes) == 70 == 2 * len(OFFICIAL_LAYOUT)
    assert sum(int(np.prod(s)) for s in shapes.values()) == generator.count_params()


def test_every_checkpoint_name_has_its_own_layer_of_the_right_shape(generator):
    layers = generator_layers(generator)
    assert list(layers) == [conv.name for conv in OFFICIAL_LAYOUT]
    assert len({id(layer) for layer in layers.values()}) == len(layers)
    state = _random_state(0)
    for name, layer in layers.items():
        kernel, bias = keras_weights(name, state[f"{name}.weight"], state[f"{name}.bias"])
        assert kernel.shape == tuple(layer.kernel.shape), name
        assert bias.shape == tuple(layer.bias.shape), name


def test_keras_and_official_weights_are_inverse():
    state = _random_state(1)
    for conv in OFFICIAL_LAYOUT:
        weight, bias = state[f"{conv.name}.weight"], state[f"{conv.name}.bias"]
        kernel, keras_bias = keras_weights(conv.name, weight, bias)
        back_weight, back_bias = official_weights(conv.name, kernel, keras_bias)
        np.testing.assert_array_equal(back_weight, weight)
        np.testing.assert_array_equal(back_bias, bias)


def test_image_channels_are_swapped_bgr_to_rgb():
    state = _random_state(2)
    name = IMAGE_IN[0]
    kernel, _ = keras_weights(name, state[f"{name}.weight"], state[f"{name}.bias"])
    # Keras input channel 0 (R) is the checkpoint's channel 2 (R of B, G, R); the map stays last.
    np.testing.assert_array_equal(
        kernel[:, :, 0, :], state[f"{name}.weight"][:, 2].transpose(1, 2, 0)
    )
    np.testing.assert_array_equal(
        kernel[:, :, 3, :], state[f"{name}.weight"][:, 3].transpose(1, 2, 0)
    )
    name = IMAGE_OUT[-1]
    _, bias = keras_weights(name, state[f"{name}.weight"], state[f"{name}.bias"])
    np.testing.assert_array_equal(bias, state[f"{name}.bias"][::-1])


def test_assigned_state_reads_back_through_the_map(generator):
    from tf_deraindrop.official.checkpoint import assign_state_dict

    state = _random_state(3)
    assign_state_dict(generator, state)
    for name, layer in generator_layers(generator).items():
        weight, bias = official_weights(name, np.asarray(layer.kernel), np.asarray(layer.bias))
        np.testing.assert_array_equal(weight, state[f"{name}.weight"])
        np.testing.assert_array_equal(bias, state[f"{name}.bias"])
