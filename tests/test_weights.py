"""`load_generator_weights`: the one loader behind evaluate, predict and the TFLite export."""

from __future__ import annotations

import pytest

from tf_deraindrop.weights import WeightsError, load_generator_weights


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
