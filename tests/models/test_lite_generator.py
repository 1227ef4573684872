"""LiteGenerator: the Generator's call contract, cost count, serialization, export in every mode."""

from __future__ import annotations

import numpy as np
import pytest

from tf_deraindrop.cli import export as export_cli

H, W = 32, 48


def _image(h=H, w=W, seed=0):
    return np.random.default_rng(seed).random((1, h, w, 3), dtype=np.float32)


def _lite(**kwargs):
    from tf_deraindrop.models import LiteGenerator

    kwargs.setdefault("half_filters", 8)
    kwargs.setdefault("width", 12)
    kwargs.setdefault("attention_filters", 8)
    kwargs.setdefault("steps", 3)
    kwargs.setdefault("dilations", (2, 4))
    model = LiteGenerator(**kwargs)
    model.build((None, None, None, 3))
    return model


def _randomize(model, seed=1, gain=1.0):
    # He-scaled kernels and nonzero biases: outputs then vary across the
    # image (zero biases and Glorot kernels make small, smooth corrections),
    # so that comparisons mean something.
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim == 4:
            std = gain * np.sqrt(2.0 / np.prod(w.shape[:3]))
        else:
            std = 0.1
        weights.append((std * rng.standard_normal(w.shape)).astype(np.float32))
    model.set_weights(weights)
    return model


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"steps": 1, "dilations": ()}, {"full_filters": 4, "steps": 2}],
    ids=["default", "one-step-no-body", "full-res-tail"],
)
def test_shapes_match_the_generator_contract(kwargs):
    model = _lite(**kwargs)
    for h, w in ((H, W), (20, 36)):
        result = model(_image(h, w))
        assert sorted(result) == ["attention", "outputs"]
        assert len(result["attention"]) == model.steps
        for a in result["attention"]:
            assert tuple(a.shape) == (1, h, w, 1) and a.dtype == "float32"
        shapes = [tuple(o.shape) for o in result["outputs"]]
        assert shapes == [(1, h // 4, w // 4, 3), (1, h // 2, w // 2, 3), (1, h, w, 3)]


def test_presets_build_and_differ_in_cost():
    from tf_deraindrop.models import LiteGenerator
    from tf_deraindrop.models.lite_generator import DEFAULT_PRESET, PRESETS

    costs = [LiteGenerator.from_preset(name).multiply_adds(480, 720) for name in PRESETS]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    assert LiteGenerator().get_config()["width"] == PRESETS[DEFAULT_PRESET]["width"]
    with pytest.raises(ValueError, match="unknown preset"):
        LiteGenerator.from_preset("huge")


@pytest.mark.parametrize("kwargs", [{}, {"full_filters": 4}], ids=["default", "full-res-tail"])
def test_multiply_adds_count_every_convolution_call(kwargs):
    """The analytic count equals the sum over each Conv2D call's kernel and output size."""
    import keras

    model = _lite(**kwargs)
    counted = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D):
            original = layer.call

            def call(x, _layer=layer, _original=original):
                y = _original(x)
                kh, kw, cin, cout = _layer.kernel.shape
                counted.append(y.shape[1] * y.shape[2] * kh * kw * cin * cout)
                return y

            layer.call = call
    model(_image(H, W))
    assert sum(counted) == model.multiply_adds(H, W)


def test_derain_is_the_last_output_and_map_and_output_is_residual():
    model = _randomize(_lite())
    image = _image()
    result = model(image)
    derained, attention = model.derain(image)
    np.testing.assert_allclose(derained, result["outputs"][-1], atol=1e-5)
    np.testing.assert_allclose(attention, result["attention"][-1], atol=1e-5)
    assert float(np.abs(np.asarray(derained) - image).max()) > 1e-2

    # With a zero last convolution the correction vanishes: O is the input.
    model.up2.kernel.assign(np.zeros(model.up2.kernel.shape, np.float32))
    model.up2.bias.assign(np.zeros(model.up2.bias.shape, np.float32))
    np.testing.assert_allclose(model.derain(image)[0], image, atol=1e-6)


def test_attention_maps_change_over_steps():
    result = _randomize(_lite(steps=3))(_image())
    maps = [np.asarray(a) for a in result["attention"]]
    assert np.abs(maps[1] - maps[0]).max() > 1e-3
    assert np.abs(maps[2] - maps[1]).max() > 1e-4


def test_keras_round_trip(tmp_path):
    import keras

    from tf_deraindrop.models import LiteGenerator

    model = _randomize(_lite(full_filters=4, dilations=(1, 3)))
    path = tmp_path / "lite.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert isinstance(loaded, LiteGenerator)
    assert loaded.get_config() == model.get_config()
    image = _image(seed=4)
    a, b = model(image), loaded(image)
    for key in ("attention", "outputs"):
        for x, y in zip(a[key], b[key]):
            np.testing.assert_allclose(x, y, atol=1e-6)


def test_mixed_precision_computes_in_float16_and_deploys_in_float32():
    import tensorflow as tf

    model = _randomize(_lite(dtype="mixed_float16"))
    assert model.compute_dtype == "float16"
    image = _image(seed=2)
    outputs = model(image)["outputs"]
    assert all(o.dtype == "float32" for o in outputs)

    reference = _lite()
    reference.set_weights(model.get_weights())
    run = tf.function(model.deploy_graph())
    derained, attention = run(tf.constant(image))
    assert derained.dtype == tf.float32
    np.testing.assert_allclose(derained, reference.derain(image)[0], atol=1e-5)
    np.testing.assert_allclose(attention, reference.derain(image)[1], atol=1e-5)
    # float16 compute is near, not equal: the deployed graph is not the float16 one.
    assert np.abs(np.asarray(outputs[-1]) - derained.numpy()).max() > 0


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory):
    model = _randomize(_lite(), seed=7)
    path = tmp_path_factory.mktemp("lite") / "lite.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("mode", ["none", "float16", "dynamic", "int8"])
def test_export_cli_every_mode_one_xnnpack_partition(mode, lite_file, calibration_dir, tmp_path):
    """`deraindrop export --weights lite.keras` converts, verifies, runs in one partition."""
    from tf_deraindrop.export import tflite
    from tf_deraindrop.export.analysis import op_counts, xnnpack_coverage
    from tf_deraindrop.inference.loading import load_generator
    from tf_deraindrop.inference.tflite import LiteDerainer
    from tf_deraindrop.metrics import psnr

    out = tmp_path / f"lite_{mode}.tflite"
    argv = ["--weights", str(lite_file), "--height", str(H), "--width", str(W)]
    argv += ["--quantize", mode, "-o", str(out), "--quiet", "--calibration-dir", calibration_dir]
    assert export_cli.main(argv) == 0  # verification against the Keras model passed
    coverage = xnnpack_coverage(out)
    assert coverage.complete, str(coverage)
    ops = op_counts(out)
    assert not {"CONCATENATION", "MIRROR_PAD", "TRANSPOSE_CONV", "AVERAGE_POOL_2D"} & set(ops)
    assert "READ_VARIABLE" not in ops  # the weights were folded
    model = load_generator(lite_file)
    params = model.count_params()
    assert out.stat().st_size < 1.5 * params * tflite.WEIGHT_BYTES[mode] + 40_000

    image = _image(seed=11)[0]
    expected = np.asarray(model.derain(image[None])[0])[0]
    got = LiteDerainer(out, threads=1).run_tile(image)
    floor = {"none": 60, "float16": 40, "dynamic": 25, "int8": 25}[mode]
    assert psnr(got, expected) > floor


def test_stream_carries_the_state_one_step_per_frame():
    """Frame 1 is `derain`; on an unchanged frame, each later frame is one more ConvLSTM step."""
    model = _randomize(_lite(steps=2))
    longer = _lite(steps=3)
    longer.set_weights(model.get_weights())  # the step count owns no weights
    image = _image(seed=5)
    first, first_map, state = model.stream(image)
    np.testing.assert_allclose(first, model.derain(image)[0], atol=1e-6)
    np.testing.assert_allclose(first_map, model.derain(image)[1], atol=1e-6)
    assert tuple(state[0].shape) == (1, H // 4, W // 4, model.attention_filters)
    second, second_map, _ = model.stream(image, state)
    np.testing.assert_allclose(second, longer.derain(image)[0], atol=1e-5)
    np.testing.assert_allclose(second_map, longer.derain(image)[1], atol=1e-5)
    assert np.abs(np.asarray(second_map) - np.asarray(first_map)).max() > 1e-4
