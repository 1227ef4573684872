"""`tf_deraindrop.export.analysis` on a small model: op counts from the file, XNNPACK coverage.

The coverage reads the private `Interpreter._get_ops_details` of
ai_edge_litert (there is no public call for the nodes after delegation):
the first test fails with a clear message when a release drops it.
"""

from __future__ import annotations

import pytest

tf = pytest.importorskip("tensorflow")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from tf_deraindrop.export.analysis import PRIVATE_NODE_LIST, op_counts, xnnpack_coverage  # noqa: E402
from tf_deraindrop.export.convert import convert  # noqa: E402
from tf_deraindrop.inference.tflite import load_interpreter  # noqa: E402


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A `derain` signature: ops XNNPACK takes (conv, add, depth-to-space), one it refuses."""
    folder = tmp_path_factory.mktemp("analysis")
    kernel = tf.constant(tf.random.stateless_normal((3, 3, 3, 12), seed=(1, 2)))

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 8, 8, 3), tf.float32, name="image")])
        def derain(self, image):
            x = tf.pad(image, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
            y = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "VALID"))
            y = tf.nn.depth_to_space(y, 2)[:, ::2, ::2] + image
            return {"derained": tf.math.cumsum(y, axis=1) * 2.0}

    module = Module()
    tf.saved_model.save(module, str(folder / "sm"), signatures={"derain": module.derain})
    path = folder / "m.tflite"
    path.write_bytes(convert(str(folder / "sm"), "none"))
    return path


def test_litert_still_has_the_private_node_list():
    assert hasattr(Interpreter, PRIVATE_NODE_LIST), (
        f"ai_edge_litert's Interpreter has no {PRIVATE_NODE_LIST} any more: "
        "export/analysis.py:xnnpack_coverage needs another way to list the nodes after "
        "delegation (or pin ai-edge-litert to a release that has it)."
    )


def test_op_counts_from_the_file_equal_the_interpreters_nodes(small_model):
    nodes = getattr(load_interpreter(small_model, xnnpack=False), PRIVATE_NODE_LIST)()
    counts = op_counts(small_model)
    assert counts == {name: sum(n["op_name"] == name for n in nodes) for name in counts}
    assert sum(counts.values()) == len(nodes)
    assert counts["CONV_2D"] == 1 and counts["CUMSUM"] == 1


def test_coverage_reports_ops_xnnpack_refuses(small_model):
    coverage = xnnpack_coverage(small_model)
    assert not coverage.complete
    assert coverage.not_taken["CUMSUM"] == 1
    assert 0 < coverage.taken < coverage.total == sum(op_counts(small_model).values())
    assert "CONV_2D" not in coverage.not_taken
