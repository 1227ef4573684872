"""The generator loader (`tf_deraindrop.inference.loading`), float32 copies, atomic writes."""

from __future__ import annotations

import os

import pytest

from tf_deraindrop.inference.loading import WeightsError, load_generator_weights
from tf_deraindrop.models.dtype import float32_generator
from tf_deraindrop.utils.files import atomic_path


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere.keras"
    with pytest.raises(WeightsError, match="generator weights not found: .*nowhere.keras"):
        load_generator_weights(missing)


@pytest.mark.parametrize("name", ["broken.keras", "broken.weights.h5", "broken.pkl"])
def test_unreadable_file_is_a_weights_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not a generator")
    with pytest.raises(WeightsError, match="broken"):
        load_generator_weights(path)


def test_loads_a_saved_generator(generator_file):
    generator = load_generator_weights(generator_file)
    assert generator.count_params() == 6_244_362


def test_atomic_path_renames_on_success_and_removes_on_failure(tmp_path):
    target = tmp_path / "sub" / "report.csv"
    with atomic_path(target) as tmp:
        assert os.path.dirname(tmp) == str(target.parent)
        assert tmp.endswith(".csv") and os.path.basename(tmp).startswith(".")
        with open(tmp, "w") as f:
            f.write("first")
        assert not target.exists()
    assert target.read_text() == "first"

    for kind in ("file", "folder"):
        with pytest.raises(RuntimeError, match="stop"):
            with atomic_path(target) as tmp:
                if kind == "file":
                    with open(tmp, "w") as f:
                        f.write("half")
                else:
                    os.makedirs(os.path.join(tmp, "inner"))
                raise RuntimeError("stop")
        assert target.read_text() == "first"
        assert sorted(os.listdir(target.parent)) == ["report.csv"]


def test_float32_generator_copies_a_mixed_precision_generator():
    import keras
    import numpy as np

    from tf_deraindrop.models import Generator

    mixed = Generator(steps=2, initial_attention=0.25, dtype="mixed_float16")
    mixed.build((None, None, None, 3))
    same = float32_generator(mixed)
    assert same is not mixed
    assert same.dtype_policy.name == "float32"
    assert (same.steps, same.initial_attention) == (2, 0.25)
    for a, b in zip(same.get_weights(), mixed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert float32_generator(same) is same
    twin = float32_generator(same, copy=True)
    assert twin is not same
    image = np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(twin(image)["outputs"][-1]),
        keras.ops.convert_to_numpy(same(image)["outputs"][-1]),
    )


def test_load_derainer_gives_one_interface_for_keras_and_tflite(tmp_path):
    import numpy as np

    import tf_deraindrop
    from tf_deraindrop.export.tflite import export_tflite
    from tf_deraindrop.models import LiteGenerator

    model = LiteGenerator()
    model.build((None, None, None, 3))
    keras_path = str(tmp_path / "student.keras")
    model.save(keras_path)
    lite_path = str(tmp_path / "student.tflite")
    export_tflite(model, lite_path, 32, 48, verify_model=False, progress=False, log=lambda _: None)
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    keras_derainer = tf_deraindrop.load_derainer(keras_path, precision="float32")
    lite_derainer = tf_deraindrop.load_derainer(lite_path)
    assert keras_derainer.engine.startswith("Keras, float32")
    assert lite_derainer.engine.startswith("LiteRT, float .tflite")
    ours = keras_derainer.derain(image)
    theirs = lite_derainer.derain(image)
    assert ours.shape == theirs.shape == image.shape and ours.dtype == np.uint8
    # The same network: the float .tflite stays within a pixel level or two of Keras.
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2
    with pytest.raises(WeightsError, match="bfloat16: .*student.tflite"):
        tf_deraindrop.load_derainer(lite_path, precision="bfloat16")
    with pytest.raises(WeightsError, match="not found: .*missing.keras"):
        tf_deraindrop.load_derainer(str(tmp_path / "missing.keras"))
