"""Export of the generator for edge devices.

* `python -m export.tflite`: TFLite (LiteRT) conversion in four modes
  (float32, float16, dynamic-range int8, full int8), checked against the
  Keras float generator; `export_tflite` is its function.
* `export.convert`: the SavedModel, the conversion, the uint8 pixel ends.
* `export.verify`: the `.tflite` against the Keras float generator (PSNR).
* `export.samples`: calibration and verification images.
* `export.graph.DeployGraph`: the forward pass arranged for TFLite/XNNPACK.
* `export.analysis`: op counts and XNNPACK coverage of a `.tflite`.
* `python -m export.benchmark`: latency and peak memory of a `.tflite`
  next to the Keras generator.

The runner for exported models is `tf_deraindrop.lite.LiteDerainer`.
"""
