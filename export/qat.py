"""Quantization-aware fine-tuning of the export graph, before int8 conversion.

Calibration alone leaves int8 far from float where quantization error
compounds through the four recurrent steps (a random-weight generator lands
near 26 dB). Here the export graph is fine-tuned with int8 simulated:

* the weights of every convolution pass through a per-output-channel,
  symmetric fake quantization (what the converter does to them), and every
  activation through the fake quantization of its int8 range
  (`export.calibrate`: the same nodes the conversion reads);
* the target is the float model's own output on the same rainy crop, so no
  clean images are needed: the int8 model learns to compute what the float
  one computes, on the kind of images it will see;
* the loss is the output's squared error (clipped to [0, 1], as it is
  used) plus that of every quantized tensor against its float value, in
  units of its range: local targets keep the error from compounding;
* the weights are updated with Adam for `steps` steps on random crops, then
  written back into the graph at the export size, which converts like a
  calibrated one. The ranges stay the calibrated ones (`saturated_ranges`):
  the straight-through gradients of `FakeQuantWithMinMaxVars` reach a range
  only from values clipped by it, so training could only widen it.

The fine-tuning works on the frozen TF graph (`export.calibrate.freeze`),
not on the Keras model: the Keras layers are left untouched, and what is
trained is exactly what is converted (split convolutions, sub-pixel
upsampling, the weights shared by the recurrent steps kept tied).

Example:
    >>> graph, report = fine_tune(generator, 480, 720, samples, rainy, steps=200)  # doctest: +SKIP
    >>> write_saved_model(graph, "saved_model", 480, 720)  # doctest: +SKIP
    >>> model = convert("saved_model", "int8")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from export.calibrate import (
    FakeQuantGraph,
    FrozenGraph,
    freeze,
    insert_fake_quant,
    quantization_points,
    record_ranges,
    saturated_ranges,
)

#: Defaults of `fine_tune` (and `export.tflite --qat-*`).
DEFAULT_CROP = 256
DEFAULT_BATCH = 1
DEFAULT_LEARNING_RATE = 1e-5
DEFAULT_FEATURE_WEIGHT = 1.0


@dataclass
class QatReport:
    """What `fine_tune` did.

    Attributes:
        steps: optimizer steps.
        seconds: time of the steps.
        losses: mean squared error of the int8-simulated output against the
            float output (both clipped to [0, 1]) per step.
        crop, batch: the training crops.
        weights: trained weight tensors (after tying the recurrent steps').
        calibration_seconds: time of the ranges.
    """

    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    crop: int = DEFAULT_CROP
    batch: int = DEFAULT_BATCH
    weights: int = 0
    calibration_seconds: float = 0.0

    def loss_change(self, window: int = 20) -> tuple[float, float]:
        """Mean loss over the first and the last `window` steps."""
        w = max(1, min(window, len(self.losses) // 2 or 1))
        return float(np.mean(self.losses[:w])), float(np.mean(self.losses[-w:]))

    def __str__(self) -> str:
        first, last = self.loss_change()
        psnr = lambda mse: 10 * math.log10(1 / mse) if mse > 0 else float("inf")  # noqa: E731
        return (
            f"quantization-aware fine-tuning: {self.steps} steps of {self.batch} x "
            f"{self.crop}x{self.crop} crops in {self.seconds:.0f} s ({self.weights} weight "
            f"tensors); int8-simulated output vs float on the crops "
            f"{psnr(first):.1f} -> {psnr(last):.1f} dB"
        )


def _fixed_output_fake_quant(graph_def):
    """Fake quantization of every sigmoid's and tanh's output to its fixed int8 steps.

    TFLite's int8 LOGISTIC outputs multiples of 1/256 in [0, 255/256] and
    TANH multiples of 1/128 in [-1, 127/128], whatever the calibration:
    training sees the same steps.
    """
    import tensorflow as tf

    fixed = {"Sigmoid": (0.0, 255.0 / 256.0), "Tanh": (-1.0, 127.0 / 128.0)}
    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph_def)
    renamed, added = {}, []
    for node in copy.node:
        if node.op in fixed:
            fake = tf.compat.v1.NodeDef(name=f"{node.name}/steps", op="FakeQuantWithMinMaxArgs")
            fake.input.append(node.name)
            fake.attr["min"].f, fake.attr["max"].f = fixed[node.op]
            fake.attr["num_bits"].i = 8
            renamed[node.name] = fake.name
            added.append(fake)
    for node in copy.node:
        for k, name in enumerate(node.input):
            base = name[:-2] if name.endswith(":0") else name
            if base in renamed:
                node.input[k] = renamed[base]
    copy.node.extend(added)
    return copy


def _weight_groups(frozen: FrozenGraph) -> list[tuple[str, np.ndarray, list[str]]]:
    """Convolution kernels and biases: `(kind, value, const node names)`, equal values tied.

    The export graph makes a constant for each use of a weight, so the
    recurrent steps' copies of one kernel are tied again by their content.
    Kernels of zeros (the `A_0` convolution) stay constant.
    """
    import tensorflow as tf

    nodes = {node.name: node for node in frozen.graph_def.node}
    uses: dict[str, str] = {}
    for node in frozen.graph_def.node:
        if node.op in ("Conv2D", "DepthwiseConv2dNative", "BiasAdd") and len(node.input) > 1:
            source = node.input[1].split(":")[0]
            if nodes.get(source) is not None and nodes[source].op == "Const":
                uses[source] = "bias" if node.op == "BiasAdd" else "kernel"
    groups: dict[str, tuple[str, np.ndarray, list[str]]] = {}
    for name, kind in uses.items():
        value = tf.make_ndarray(nodes[name].attr["value"].tensor)
        if value.dtype != np.float32 or not np.any(value):
            continue
        key = hashlib.sha1(kind.encode() + str(value.shape).encode() + value.tobytes()).hexdigest()
        groups.setdefault(key, (kind, value, []))[2].append(name)
    return list(groups.values())


def _fake_quant_kernel(kernel):
    """Per-output-channel symmetric int8 (-127..127), as the converter quantizes weights."""
    import tensorflow as tf

    axes = list(range(len(kernel.shape) - 1))
    bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel), axis=axes), 1e-8))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel, -bound, bound, num_bits=8, narrow_range=True
    )


class _Adam:
    """Adam on a list of `tf.Variable`s (in TF: the export path trains no Keras model)."""

    def __init__(self, variables, learning_rate: float, beta1=0.9, beta2=0.999, epsilon=1e-8):
        import tensorflow as tf

        self.variables = variables
        self.lr, self.beta1, self.beta2, self.epsilon = learning_rate, beta1, beta2, epsilon
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.t = tf.Variable(0.0, trainable=False)

    def apply(self, gradients) -> None:
        import tensorflow as tf

        self.t.assign_add(1.0)
        correction = tf.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        for var, g, m, v in zip(self.variables, gradients, self.m, self.v):
            if g is None:
                continue
            m.assign(self.beta1 * m + (1 - self.beta1) * g)
            v.assign(self.beta2 * v + (1 - self.beta2) * tf.square(g))
            var.assign_sub(self.lr * correction * m / (tf.sqrt(v) + self.epsilon))


def _at_export_scale(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The image resized to just cover the export size, as the model will see whole frames.

    Activation statistics depend on the scale of the scene: crops of a
    photo at another scale than the calibration's would train the ranges
    and weights for other images than the model will get.
    """
    from export.samples import _resize

    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    if abs(scale - 1) < 1e-6:
        return np.asarray(image, np.float32)
    return _resize(image, max(height, round(h * scale)), max(width, round(w * scale)))


def _crops(images: Sequence[np.ndarray], crop: int, batch: int, rng) -> np.ndarray:
    """`batch` random `crop x crop` crops (upscaled first where an image is smaller), flipped."""
    from export.samples import _resize

    out = []
    for _ in range(batch):
        image = images[int(rng.integers(len(images)))]
        h, w = image.shape[:2]
        if min(h, w) < crop:
            scale = crop / min(h, w)
            image = _resize(image, max(crop, round(h * scale)), max(crop, round(w * scale)))
            h, w = image.shape[:2]
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        piece = image[y : y + crop, x : x + crop]
        out.append(piece[:, ::-1] if rng.random() < 0.5 else piece)
    return np.ascontiguousarray(np.stack(out), np.float32)


def fine_tune(
    generator,
    height: int,
    width: int,
    calibration_samples: Sequence[np.ndarray],
    images: Sequence[np.ndarray],
    steps: int,
    *,
    crop: int = DEFAULT_CROP,
    batch: int = DEFAULT_BATCH,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    feature_weight: float = DEFAULT_FEATURE_WEIGHT,
    seed: int = 0,
    progress: bool = False,
) -> tuple[FakeQuantGraph, QatReport]:
    """Fine-tunes the generator's export graph with int8 simulated; returns it with its ranges.

    Args:
        generator: a built `Generator` or `LiteGenerator` (left unchanged).
        height, width: the export size.
        calibration_samples: float32 `(height, width, 3)` images for the
            ranges (`export.calibrate.record_ranges`, then `saturated_ranges`).
        images: float32 rainy images of any size to crop training batches
            from, each first resized to just cover the export size.
        steps: optimizer steps (0: calibration only).
        crop: side of the square training crops (a multiple of 4; at most
            the export size).
        batch: crops per step.
        learning_rate: Adam's step for the weights.
        feature_weight: weight of the loss on every quantized tensor against
            its float value (in units of its range), next to the output's.
        seed: crops and flips.

    Returns:
        `(graph, report)`: a `FakeQuantGraph` at the export size, to convert
        like `export.calibrate`'s, and a `QatReport`.

    Raises:
        ValueError: bad sizes or steps, or no images.
    """
    import tensorflow as tf
    from tqdm import tqdm

    if steps < 0:
        raise ValueError(f"steps must be at least 0, got {steps}")
    if not images:
        raise ValueError("quantization-aware fine-tuning needs rainy images")
    crop = min(crop, height, width)
    if crop < 8 or crop % 4:
        raise ValueError(f"crop must be a multiple of 4 and at least 8, got {crop}")

    full = freeze(generator, height, width)
    ranges = record_ranges(full, calibration_samples)
    values = saturated_ranges(full, ranges.values)
    report = QatReport(steps, 0.0, crop=crop, batch=batch)
    report.calibration_seconds = ranges.seconds
    if steps == 0:
        return FakeQuantGraph(full, values), report

    train = freeze(generator, crop, crop, batch)
    points = sorted(values)
    if set(quantization_points(train)) != set(points):
        raise RuntimeError("the export graph differs between the export and training sizes")
    simulated, outputs = insert_fake_quant(train, values)
    simulated = _fixed_output_fake_quant(simulated)
    groups = _weight_groups(train)
    weights = [tf.Variable(value) for _, value, _ in groups]
    widths = [max(values[p][1] - values[p][0], 1e-3) for p in points]
    report.weights = len(weights)

    def int8_forward(x):
        input_map = {train.input: x}
        for (kind, _, names), variable in zip(groups, weights):
            tensor = _fake_quant_kernel(variable) if kind == "kernel" else tf.identity(variable)
            input_map.update({name + ":0": tensor for name in names})
        derained, *features = tf.graph_util.import_graph_def(
            simulated,
            input_map=input_map,
            return_elements=[outputs[0]] + [p.split(":")[0] + "/range:0" for p in points],
            name="int8",
        )
        return derained, features

    def float_forward(x):
        derained, *features = tf.graph_util.import_graph_def(
            train.graph_def,
            input_map={train.input: x},
            return_elements=[train.outputs[0]] + points,
            name="float",
        )
        return derained, features

    optimizer = _Adam(weights, learning_rate)

    @tf.function(input_signature=[tf.TensorSpec((batch, crop, crop, 3), tf.float32)])
    def step(x):
        target, target_features = float_forward(x)
        derained, features = int8_forward(x)
        # Compared as the outputs are used, clipped to [0, 1]: an untrained
        # generator's output strays far outside, where no error matters.
        output_error = tf.reduce_mean(
            tf.square(tf.clip_by_value(derained, 0.0, 1.0) - tf.clip_by_value(target, 0.0, 1.0))
        )
        # Each quantized tensor against its float value, in units of its
        # range: local targets keep errors from compounding step after step.
        feature_error = tf.add_n(
            [
                tf.reduce_mean(tf.square(f - t)) / (w * w)
                for f, t, w in zip(features, target_features, widths)
            ]
        ) / len(points)
        loss = output_error + feature_weight * feature_error
        # Symbolic gradients: a GradientTape does not see the ops that
        # import_graph_def creates; tf.gradients walks the graph itself.
        gradients = tf.gradients(loss, weights, stop_gradients=[target, *target_features])
        optimizer.apply(gradients)
        return output_error

    images = [_at_export_scale(image, height, width) for image in images]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc="qat", unit="step", disable=not progress, leave=False):
        report.losses.append(float(step(_crops(images, crop, batch, rng))))
    report.seconds = time.perf_counter() - start
    trained = _with_weights(full, groups, [w.numpy() for w in weights])
    return FakeQuantGraph(trained, values), report


def _with_weights(frozen: FrozenGraph, groups, values) -> FrozenGraph:
    """A copy of `frozen` with each group's constants set to its trained value."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.CopyFrom(frozen.graph_def)
    by_name = {}
    for (_, _, names), value in zip(groups, values):
        by_name.update({name: value for name in names})
    found = 0
    for node in graph_def.node:
        if node.name in by_name:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(by_name[node.name]))
            found += 1
    if found != len(by_name):
        raise RuntimeError("the export graph differs between the export and training sizes")
    return FrozenGraph(graph_def, frozen.input, frozen.outputs, frozen.height, frozen.width)


def check_qat_arguments(quantize: str, calibrator: str, steps: int, data_dir: str | None) -> None:
    """Raises `ExportError` for `--qat-steps`/`--data-dir` flags that cannot work together."""
    from export.errors import ExportError

    if steps < 0:
        raise ExportError(f"--qat-steps {steps}: must be 0 or more")
    if steps and not data_dir:
        raise ExportError("--qat-steps needs --data-dir (a folder of rainy photos to fine-tune on)")
    if data_dir and not steps:
        raise ExportError("--data-dir is for fine-tuning: give --qat-steps N too")
    if steps and quantize != "int8":
        raise ExportError("--qat-steps fine-tunes for int8: use it with --quantize int8")
    if steps and calibrator != "tensorflow":
        raise ExportError(
            f"--qat-steps with --calibrator {calibrator}: fine-tuning trains the fixed "
            "ranges of --calibrator tensorflow"
        )


def load_qat_images(
    quantize: str, calibrator: str, steps: int, data_dir: str | None
) -> list[np.ndarray]:
    """The rainy images of `--data-dir` (none without `--qat-steps`); `ExportError` if unusable."""
    from export.samples import read_images

    check_qat_arguments(quantize, calibrator, steps, data_dir)
    if not steps:
        return []
    return read_images(list_data_dir(data_dir), "fine-tuning")


def list_data_dir(data_dir: str) -> list[str]:
    """The images of `--data-dir`; `ExportError` naming the flag if there are none."""
    from export.errors import ExportError
    from export.samples import list_images

    try:
        return list_images(data_dir, "--data-dir")
    except ExportError as err:
        if "--data-dir" in str(err):
            raise
        raise ExportError(f"--data-dir {err}") from err
