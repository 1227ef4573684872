"""The model of a video pipeline: a function of a list of frames, batched for Keras.

`frame_model` wraps what `derain_video` is given: a Keras model with the
Generator's call contract runs several frames a pass (bounded by
`max_pixels`), an object with `derain(image)` (a `LiteDerainer`) runs them
one by one, and a `FrameModel` is used as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Frames per pass of a Keras model. On this CPU a batch of 4 runs at the
#: speed of 4 single passes (`benchmarks/bench_video.py`), so frames go one
#: at a time, which keeps the queues short; `--batch` raises it (on a GPU).
DEFAULT_BATCH = 1


class FrameModel:
    """A model as a function of a list of uint8 RGB frames of one size.

    Built by `frame_model`; `__call__` returns the derained frames (uint8)
    and, with `attention`, the final attention maps (float32 `(H, W)`).

    Attributes:
        batch_size: frames per call.
        attention: whether attention maps are returned.
    """

    batch_size = 1
    attention = False

    def __call__(self, images: Sequence[np.ndarray]):
        raise NotImplementedError


class _PerFrame(FrameModel):
    """An object with `derain(image, return_attention=...)`: a `LiteDerainer`, say."""

    def __init__(self, model, attention: bool):
        if attention and getattr(model, "has_attention", True) is False:
            raise ValueError(
                f"{getattr(model, 'path', 'the model')} has no attention output; "
                "export it with --with-attention"
            )
        self.model, self.attention = model, attention

    def __call__(self, images):
        if not self.attention:
            return [self.model.derain(image) for image in images], None
        pairs = [self.model.derain(image, return_attention=True) for image in images]
        return [p[0] for p in pairs], [p[1] for p in pairs]


class _KerasBatches(FrameModel):
    """A Keras model with the Generator's call contract, up to `batch_size` frames a pass.

    A pass holds at most `max_pixels` (padded): fewer frames go together
    when they are large, and a frame too large for one pass goes alone
    through `tf_deraindrop.derain`, which tiles it. So do all frames when
    `derain_options` name a tile size.
    """

    def __init__(self, model, batch_size: int, attention: bool, max_pixels, derain_options):
        self.model, self.attention = model, attention
        self.batch_size = max(1, int(batch_size))
        self.max_pixels = max_pixels
        self.derain_options = dict(derain_options)

    def per_pass(self, h: int, w: int) -> int:
        """Frames of `h` x `w` run together (1: one at a time through `derain`)."""
        if self.batch_size == 1 or set(self.derain_options) - {"max_pixels"}:
            return 1
        if self.max_pixels is None:
            return self.batch_size
        pixels = (h + (-h) % 4) * (w + (-w) % 4)
        return max(1, min(self.batch_size, self.max_pixels // pixels))

    def __call__(self, images):
        from tf_deraindrop.inference.keras import derain

        h, w = images[0].shape[:2]
        size = self.per_pass(h, w)
        if size == 1:
            results = [
                derain(self.model, image, return_attention=self.attention, **self.derain_options)
                for image in images
            ]
            if not self.attention:
                return results, None
            return [r[0] for r in results], [r[1] for r in results]
        derained, maps = [], []
        for first in range(0, len(images), size):
            out, attention = self._pass(images[first : first + size], size)
            derained += out
            maps += attention
        return derained, (maps if self.attention else None)

    def _pass(self, images, size: int):
        from tf_deraindrop.inference.keras import pad_to_multiple
        from tf_deraindrop.utils.images import to_float_rgb, to_uint8

        h, w = images[0].shape[:2]
        batch = [pad_to_multiple(to_float_rgb(image)) for image in images]
        # A short last batch is filled up with copies: one traced shape.
        batch += [batch[-1]] * (size - len(batch))
        result = self.model.predict_on_batch(np.stack(batch))
        count = len(images)
        outputs = np.asarray(result["outputs"][-1])[:count, :h, :w]
        derained = [to_uint8(o) for o in outputs]
        if not self.attention:
            return derained, []
        return derained, list(np.asarray(result["attention"][-1])[:count, :h, :w, 0])


def frame_model(
    model, batch_size: int | None = None, attention: bool = False, **derain_options
) -> FrameModel:
    """Wraps a model for `derain_video`.

    Args:
        model: a Keras model with the Generator's call contract (a dict with
            `"attention"`, a list of maps, and `"outputs"`, the last of which is
            the derained image), or an object with `derain(image,
            return_attention=False)` such as a `LiteDerainer`.
        batch_size: frames per pass of a Keras model (None: `DEFAULT_BATCH`).
        attention: also return the final attention maps.
        **derain_options: passed to `tf_deraindrop.derain` (such as `tile`),
            which then runs frame by frame; `precision` (`tf_deraindrop.inference.precision`)
            picks the model once instead.

    Raises:
        ValueError: attention asked of a model without that output.
    """
    from tf_deraindrop.inference.keras import DEFAULT_MAX_PIXELS, KerasDerainer
    from tf_deraindrop.inference.loading import is_keras_model

    if isinstance(model, FrameModel):
        return model
    if isinstance(model, KerasDerainer):
        # Its precision is resolved already; its options are its own.
        derain_options = {**model.derain_options, **derain_options}
        model = model.generator
    elif not is_keras_model(model):
        return _PerFrame(model, attention)
    precision = derain_options.pop("precision", None)
    if precision is not None:
        # Resolved once here, so that frames still go in batches of `batch_size`.
        from tf_deraindrop.inference.precision import resolve_generator

        model = resolve_generator(model, precision).model
    # None too: one pass per frame, whatever its size (--max-pixels 0).
    max_pixels = derain_options.setdefault("max_pixels", DEFAULT_MAX_PIXELS)
    batch = DEFAULT_BATCH if batch_size is None else batch_size
    return _KerasBatches(model, batch, attention, max_pixels, derain_options)
