"""Export of the generator for edge devices.

* `deraindrop export`: TFLite (LiteRT) conversion in four modes
  (float32, float16, dynamic-range int8, full int8), checked against the
  Keras float generator; `export_tflite` is its function.
* `tf_deraindrop.export.convert`: the SavedModel, the conversion, the uint8 pixel ends.
* `tf_deraindrop.export.int8.pipeline`: what an int8 export converts, by `--calibrator` and
  `--qat-steps`: `tf_deraindrop.export.int8.calibrate` (ranges measured in TensorFlow on the
  graph `export.frozen` freezes) or `tf_deraindrop.export.int8.qat` (quantization-aware
  fine-tuning, with `tf_deraindrop.export.int8.qat_graph`).
* `tf_deraindrop.export.verify`: the `.tflite` against the Keras float generator (PSNR);
  `tf_deraindrop.export.report`: what an export did.
* `tf_deraindrop.export.samples`: calibration, verification and fine-tuning images.
* `tf_deraindrop.export.graph.DeployGraph`: the forward pass arranged for TFLite/XNNPACK.
* `tf_deraindrop.export.analysis`: op counts and XNNPACK coverage of a `.tflite`.
* `deraindrop benchmark`: latency and peak memory of a `.tflite`
  next to the Keras generator.

The runner for exported models is `tf_deraindrop.inference.tflite.LiteDerainer`.
"""
