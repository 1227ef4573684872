"""One attention palette: the training panels, predict's heat maps and videos agree."""

from __future__ import annotations

import numpy as np
import pytest

from tf_deraindrop.utils.visualize import attention_heatmap, heat_map, make_panel, side_by_side


def test_panels_use_the_heat_map_palette():
    rng = np.random.default_rng(0)
    images = [rng.random((2, 6, 8, 3), dtype=np.float32) for _ in range(3)]
    maps = [rng.uniform(-0.2, 1.2, (2, 6, 8, 1)).astype(np.float32) for _ in range(4)]
    panel = make_panel(images[0], maps, images[1], images[2], gap=2)
    assert panel.shape == (2 * 6 + 2, 7 * 8 + 6 * 2, 3) and panel.dtype == np.float32
    # Row 1, tile 2 (A_1) is the heat map of the second example's A_1.
    tile = panel[8:14, 10:18]
    np.testing.assert_allclose(tile, heat_map(maps[0][1]), atol=1e-6)
    np.testing.assert_allclose(tile * 255, attention_heatmap(maps[0][1]), atol=0.5 + 1e-4)
    assert np.all(panel[6:8] == 1.0) and np.all(panel[:, 8:10] == 1.0)  # white gaps


def test_side_by_side():
    a = np.zeros((3, 4, 3), np.uint8)
    b = np.full((3, 5, 3), 7, np.uint8)
    row = side_by_side([a, b], gap=2)
    assert row.shape == (3, 11, 3) and row.dtype == np.uint8
    assert np.all(row[:, 4:6] == 255) and np.all(row[:, 6:] == 7)
    with pytest.raises(ValueError, match="one height"):
        side_by_side([a, np.zeros((4, 4, 3), np.uint8)])
