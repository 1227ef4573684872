"""Importing `gen.pkl`: good files, and clear errors for bad ones."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tf_deraindrop.cli import convert as convert_official  # noqa: E402
from tf_deraindrop.official.checkpoint import (  # noqa: E402
    CheckpointError,
    import_official_checkpoint,
    official_shapes,
)


def random_state(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen) * 0.05 for k, s in official_shapes().items()}


def test_layout_has_70_tensors():
    shapes = official_shapes()
    assert len(shapes) == 70
    assert sum(int(np.prod(s)) for s in shapes.values()) == 6_244_362


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "gen.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        import_official_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        import_official_checkpoint(tmp_path / "nope.pkl")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = random_state()
    del state["conv_g.0.weight"]
    state["extra.0.weight"] = torch.zeros(3)
    path = tmp_path / "gen.pkl"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        import_official_checkpoint(path)
    message = str(info.value)
    assert "missing keys: conv_g.0.weight" in message
    assert "unexpected keys: extra.0.weight" in message


def test_shape_mismatch_is_named(tmp_path):
    state = random_state()
    state["conv5.0.weight"] = torch.zeros(256, 128, 3, 3)
    path = tmp_path / "gen.pkl"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"conv5.0.weight is \(256, 128, 3, 3\), expected"):
        import_official_checkpoint(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "gen.pkl"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        import_official_checkpoint(path)


def test_data_parallel_prefix_is_accepted(tmp_path):
    path = tmp_path / "gen.pkl"
    torch.save({f"module.{k}": v for k, v in random_state().items()}, path)
    assert import_official_checkpoint(path).count_params() == 6_244_362


def test_cli_converts_and_reports_errors(tmp_path, capsys):
    good = tmp_path / "gen.pkl"
    torch.save(random_state(), good, _use_new_zipfile_serialization=False)
    out = tmp_path / "sub" / "generator.keras"
    assert convert_official.main([str(good), "-o", str(out)]) == 0
    assert out.is_file()
    assert not list(out.parent.glob(".*partial*"))

    bad = tmp_path / "bad.pkl"
    bad.write_text("nonsense")
    assert convert_official.main([str(bad), "-o", str(tmp_path / "x.keras")]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.keras").exists()
