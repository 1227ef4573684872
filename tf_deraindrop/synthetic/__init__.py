"""Synthetic raindrops: render drops over clean photos, and write training pairs.

* `render_raindrops(clean, seed, preset="raindrop-dataset", **overrides)`
  returns `(rainy, mask)`: physically based drops (ray-traced water caps on a
  defocused glass pane, then a camera pipeline) over a float RGB photo. The
  mask is where the defocused drop coverage is visible (>= `mask_alpha`).
* `PRESETS`: the camera/glass set-ups (`raindrop-dataset`, `dashcam`,
  `phone`); `check_params(preset, **overrides)` validates overrides.
* `synthesize_dataset(out_dir, clean_images, ...)` writes pairs in the
  Raindrop layout (`deraindrop synthesize`); `default_clean_images()` are the
  photos bundled with scikit-image.
* `tf_deraindrop.synthetic.classic`: the older 2-D renderer, kept for
  ablations only.

Example:
    >>> from tf_deraindrop.synthetic import render_raindrops
    >>> rainy, mask = render_raindrops(clean, seed=0, preset="dashcam")
"""

from tf_deraindrop.synthetic.presets import DEFAULT_PRESET, PRESETS
from tf_deraindrop.synthetic.render import MIN_SIDE, check_params, render_raindrops
from tf_deraindrop.synthetic.synthesize import (
    SynthesisError,
    default_clean_images,
    fit_to_size,
    synthesize_dataset,
)

__all__ = [
    "DEFAULT_PRESET",
    "MIN_SIDE",
    "PRESETS",
    "SynthesisError",
    "check_params",
    "default_clean_images",
    "fit_to_size",
    "render_raindrops",
    "synthesize_dataset",
]
