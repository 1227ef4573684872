"""The Keras generator against a PyTorch reference of the authors' network.

A random He-initialised reference is saved with `torch.save` in the zip and
the legacy format (the one `gen.pkl` uses), imported, and run on the same
pixels; every attention map, side output and output must agree to 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reference.torch_generator import ReferenceGenerator, he_init_, run_reference  # noqa: E402
from tf_deraindrop.official.checkpoint import import_official_checkpoint, official_shapes  # noqa: E402
from tf_deraindrop.utils.images import read_image  # noqa: E402

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    return he_init_(ReferenceGenerator(), seed=1).eval()


@pytest.fixture(scope="module", params=["zip", "legacy"])
def imported(request, reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / f"gen_{request.param}.pkl"
    torch.save(reference.state_dict(), path, _use_new_zipfile_serialization=request.param == "zip")
    return import_official_checkpoint(path)


def max_errors(keras_result, torch_result):
    # Guard against a vacuous comparison of near-constant outputs.
    assert np.std(torch_result["outputs"][-1]) > 0.05
    assert np.std(torch_result["attention"][-1]) > 0.05
    errors = {}
    for key in ("attention", "outputs"):
        for i, (a, b) in enumerate(zip(keras_result[key], torch_result[key])):
            a = np.asarray(a)
            assert a.shape == b.shape, (key, i, a.shape, b.shape)
            errors[f"{key}[{i}]"] = float(np.abs(a - b).max())
    return errors


def test_reference_has_the_checkpoint_layout(reference):
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert shapes == official_shapes()
    assert sum(int(np.prod(s)) for s in shapes.values()) == 6_244_362


def test_imported_generator_matches_reference_on_a_crop(imported, reference):
    rng = np.random.default_rng(0)
    image = rng.random((1, 36, 52, 3), dtype=np.float32)
    errors = max_errors(imported(image), run_reference(reference, image))
    print("max abs errors:", errors)
    assert max(errors.values()) <= TOLERANCE, errors


def test_imported_generator_matches_reference_on_real_photo(
    imported, reference, real_raindrops_dir
):
    photo = read_image(real_raindrops_dir / "case1.jpg")[200:296, 300:428][None]
    errors = max_errors(imported(photo), run_reference(reference, photo))
    print("max abs errors (real photo crop):", errors)
    assert max(errors.values()) <= TOLERANCE, errors


def test_rgb_model_equals_authors_bgr_pipeline(imported, reference):
    # The reference's own output channels come out as BGR; a mistake in the
    # importer's channel permutation would show as swapped R and B here.
    rng = np.random.default_rng(3)
    image = rng.random((1, 32, 32, 3), dtype=np.float32)
    image[..., 0] = 1.0  # strongly red
    ours = np.asarray(imported(image)["outputs"][-1])
    bgr = torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(0, 3, 1, 2)))
    with torch.no_grad():
        theirs_bgr = reference(bgr)[-1].numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours[..., 0], theirs_bgr[..., 2], atol=TOLERANCE)
    np.testing.assert_allclose(ours[..., 2], theirs_bgr[..., 0], atol=TOLERANCE)


def test_transposed_conv_same_padding_equals_torch_pad_1():
    import keras

    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 6, 10, 8)).astype(np.float32)
    layer = keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same")
    layer.build(x.shape)
    w = rng.standard_normal((8, 4, 4, 4)).astype(np.float32)  # torch [in, out, kh, kw]
    b = rng.standard_normal(4).astype(np.float32)
    layer.set_weights([w.transpose(2, 3, 1, 0), b])
    ours = np.asarray(layer(x))
    conv = torch.nn.ConvTranspose2d(8, 4, 4, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        conv.bias.copy_(torch.from_numpy(b))
        theirs = conv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    assert ours.shape == (1, 12, 20, 4)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_reflect_pad_average_pool_equals_torch():
    from tf_deraindrop.layers import reflect_pad_average_pool

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    ours = np.asarray(reflect_pad_average_pool(x))
    t = torch.from_numpy(x.transpose(0, 3, 1, 2))
    theirs = torch.nn.AvgPool2d(2, stride=1)(torch.nn.ReflectionPad2d((1, 0, 1, 0))(t))
    np.testing.assert_allclose(ours, theirs.numpy().transpose(0, 2, 3, 1), atol=1e-6)
