"""`export.graph.DeployGraph` computes what `Generator` computes (no TFLite conversion: fast).

Random He-scaled weights and non-zero biases, so that every kernel split,
bias and the sub-pixel upsampling count in the comparison.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tf_deraindrop.export.graph import DeployGraph  # noqa: E402
from tf_deraindrop.models import Generator  # noqa: E402
from tf_deraindrop.official.names import generator_layers  # noqa: E402

H, W = 24, 36


def _random_generator(seed: int, dtype: str = "float32") -> Generator:
    generator = Generator(dtype=dtype)
    generator.build((None, None, None, 3))
    rng = np.random.default_rng(seed)
    for layer in generator_layers(generator).values():
        kernel = layer.kernel
        fan_in = int(np.prod(kernel.shape[:-1]))
        layer.set_weights(
            [
                rng.normal(0.0, np.sqrt(2.0 / fan_in), kernel.shape).astype(np.float32),
                rng.normal(0.0, 0.05, layer.bias.shape).astype(np.float32),
            ]
        )
    return generator


@pytest.fixture(scope="module")
def generator():
    return _random_generator(seed=4)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(5).random((1, H, W, 3), dtype=np.float32)


def test_deploy_graph_equals_the_generator_within_1e5(generator, image):
    result = generator(image, training=False)
    expected_output = np.asarray(result["outputs"][-1])
    expected_attention = np.asarray(result["attention"][-1])
    output, attention = DeployGraph(generator)(tf.constant(image))
    assert output.shape == expected_output.shape and attention.shape == expected_attention.shape
    # The comparison means something: the image is not passed through unchanged.
    assert np.abs(expected_output - image).mean() > 1e-2
    np.testing.assert_allclose(np.asarray(output), expected_output, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(attention), expected_attention, rtol=0, atol=1e-5)


def test_each_attention_map_matches(generator, image):
    expected = [np.asarray(a) for a in generator(image, training=False)["attention"]]
    got = [np.asarray(a) for a in DeployGraph(generator).attention_maps(tf.constant(image))]
    assert len(got) == len(expected) == generator.steps
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
