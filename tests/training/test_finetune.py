"""Fine-tuning: --init-generator (the authors' gen.pkl, .keras), --freeze, and resume lineage."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.helpers.train import (
    kill_at_first_checkpoint,
    make_pairs,
    small_run_flags,
    train_command,
)
from tf_deraindrop.cli import train as train_module

torch = pytest.importorskip("torch")


def _flags(data_dir, out_dir, **overrides) -> list[str]:
    return small_run_flags(data_dir, out_dir, **{"seed": 5, "steps": 2, **overrides})


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), count=4, size=40)


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    from reference.torch_generator import save_random_checkpoint

    path = tmp_path_factory.mktemp("authors") / "gen.pkl"
    save_random_checkpoint(path, seed=3, legacy=True)
    return str(path)


@pytest.fixture(scope="module")
def imported(authors_checkpoint):
    from tf_deraindrop.official.checkpoint import import_official_checkpoint

    return import_official_checkpoint(authors_checkpoint)


def _trained_generator(out_dir):
    from tf_deraindrop.inference.loading import load_generator

    return load_generator(os.path.join(out_dir, "generator.keras"))


def test_learning_rates_at_zero_end_with_the_imported_weights_exactly(
    pairs_dir, authors_checkpoint, imported, tmp_path
):
    out = str(tmp_path / "zero")
    flags = _flags(pairs_dir, out, **{"init-generator": authors_checkpoint})
    assert train_module.main([*flags, "--g-lr", "0", "--d-lr", "0"]) == 0
    result = _trained_generator(out)
    for got, want in zip(result.get_weights(), imported.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    record = json.load(open(os.path.join(out, "config.json")))
    assert record["config"]["init_generator"] == authors_checkpoint
    assert record["resolved"]["starting_weights"] == f"generator from {authors_checkpoint}"


def test_freeze_attention_trains_only_the_autoencoder(
    pairs_dir, authors_checkpoint, imported, tmp_path
):
    out = str(tmp_path / "frozen")
    flags = _flags(pairs_dir, out, **{"init-generator": authors_checkpoint, "freeze": "attention"})
    assert train_module.main(flags) == 0
    result = _trained_generator(out)

    def weights(model, part):
        return [w for layer in model.part_layers(part) for w in layer.get_weights()]

    for new, old in zip(weights(result, "attention"), weights(imported, "attention"), strict=True):
        np.testing.assert_array_equal(new, old)
    pairs = zip(weights(result, "autoencoder"), weights(imported, "autoencoder"), strict=True)
    assert all(not np.array_equal(new, old) for new, old in pairs)


def test_a_resumed_run_keeps_its_lineage_and_does_not_reimport(
    pairs_dir, authors_checkpoint, imported, tmp_path, capsys
):
    """Killed and resumed with the attention network frozen: the frozen part, which no
    optimizer holds, comes back from the checkpoint, not from a fresh generator."""
    import shutil

    init = str(tmp_path / "gen_copy.pkl")
    shutil.copyfile(authors_checkpoint, init)
    out = str(tmp_path / "lineage")
    flags = _flags(pairs_dir, out, steps=8, **{"init-generator": init, "freeze": "attention"})
    kill_at_first_checkpoint(train_command(*flags), out)
    # The import file is gone: the resume must not need it, and must not re-import.
    os.remove(init)
    assert train_module.main(flags) == 0
    assert "not re-imported" in capsys.readouterr().out
    record = json.load(open(os.path.join(out, "config.json")))
    assert record["config"]["init_generator"] == init
    assert record["resolved"]["resumed_from_step"] > 0
    assert f"the run started from: generator from {init}" in record["resolved"]["starting_weights"]
    result = _trained_generator(out)
    for layer, original in zip(result.part_layers("attention"), imported.part_layers("attention")):
        for new, old in zip(layer.get_weights(), original.get_weights(), strict=True):
            np.testing.assert_array_equal(new, old, err_msg=layer.name)


def test_bad_init_files_are_named_before_any_data_is_read(tmp_path, capsys):
    missing = str(tmp_path / "nowhere.pkl")
    # The data folder does not exist either: the weights are checked first.
    flags = _flags(str(tmp_path / "no_data"), str(tmp_path / "o"), **{"init-generator": missing})
    assert train_module.main(flags) == 2
    err = capsys.readouterr().err
    assert "--init-generator" in err and "nowhere.pkl" in err and "no_data" not in err
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a keras file")
    flags = _flags(str(tmp_path / "no_data"), str(tmp_path / "o2"), **{"init-generator": str(junk)})
    assert train_module.main(flags) == 2
    assert "junk.keras" in capsys.readouterr().err
    flags = _flags(
        str(tmp_path / "no_data"), str(tmp_path / "o3"), **{"init-discriminator": missing}
    )
    assert train_module.main(flags) == 2
    assert "--init-discriminator" in capsys.readouterr().err
