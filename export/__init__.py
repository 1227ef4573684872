"""Export of the generator for edge devices.

* `python -m export.tflite`: TFLite (LiteRT) conversion in four modes
  (float32, float16, dynamic-range int8, full int8), checked against the
  Keras float generator; `export_tflite` is its function.
* `export.convert`: the SavedModel, the conversion, the uint8 pixel ends.
* `export.int8`: what an int8 export converts, by `--calibrator` and
  `--qat-steps`: `export.calibrate` (ranges measured in TensorFlow on the
  graph `export.frozen` freezes) or `export.qat` (quantization-aware
  fine-tuning, with `export.qat_graph`).
* `export.verify`: the `.tflite` against the Keras float generator (PSNR);
  `export.report`: what an export did.
* `export.samples`: calibration, verification and fine-tuning images.
* `export.graph.DeployGraph`: the forward pass arranged for TFLite/XNNPACK.
* `export.analysis`: op counts and XNNPACK coverage of a `.tflite`.
* `python -m export.benchmark`: latency and peak memory of a `.tflite`
  next to the Keras generator.

The runner for exported models is `tf_deraindrop.lite.LiteDerainer`.
"""
