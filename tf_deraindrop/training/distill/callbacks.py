"""The callbacks a distillation run adds to `training.callbacks`: validation and its panels.

`Validation` scores the student against the cached teacher on whole frames
(and both against the ground truth where there are pairs); `DistillLogger`
is the run's TensorBoard logger with panels rainy | teacher | student |
attention maps.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_deraindrop.training.callbacks import RunProgress, TensorBoardLogger


class Validation(keras.callbacks.Callback):
    """Adds `val_psnr` (student vs cached teacher, RGB, whole frames) to the epoch's logs.

    With pairs, also `val_psnr_y_gt` and `val_teacher_psnr_y_gt`: the
    student's and the teacher's Y-PSNR against the ground truth. It runs
    before the callbacks that read these logs (TensorBoard, best model).

    Args:
        examples: the validation frames.
        frames: their `FrameStore`.
        cache: the `TeacherCache` holding the teacher's outputs on them.

    Example:
        >>> callbacks = [Validation(val, frames, cache), logger, best]  # doctest: +SKIP
    """

    def __init__(self, examples, frames, cache):
        super().__init__()
        self.examples, self.frames, self.cache = examples, frames, cache
        self._run = None

    def on_epoch_end(self, epoch, logs=None):
        from tf_deraindrop.metrics import psnr, psnr_y
        from tf_deraindrop.utils.images import to_uint8

        if logs is None or not self.examples:
            return
        if self._run is None:
            self._run = tf.function(
                lambda x: self.model.generator(x, training=False)["outputs"][-1],
                reduce_retracing=True,
            )
        student_teacher, student_gt, teacher_gt = [], [], []
        for example in self.examples:
            image = self.frames.get(example.rainy)
            out = self._run(tf.constant(image[None])).numpy()[0]
            target = self.cache.get(example)["out"]
            student_teacher.append(psnr(out, target))
            if example.clean:
                clean = to_uint8(self.frames.get(example.clean))
                student_gt.append(psnr_y(to_uint8(out), clean))
                teacher_gt.append(psnr_y(to_uint8(target), clean))
        logs["val_psnr"] = float(np.mean(student_teacher))
        if student_gt:
            logs["val_psnr_y_gt"] = float(np.mean(student_gt))
            logs["val_teacher_psnr_y_gt"] = float(np.mean(teacher_gt))


class DistillLogger(TensorBoardLogger):
    """The run's TensorBoard logger, with panels rainy | teacher | student | A_1..A_N.

    `sample` is `(rainy, teacher output)` of a few frames; the other
    arguments are `TensorBoardLogger`'s.
    """

    PANEL_TAG = "panels/rainy_teacher_student_attention"
    PANEL_DESCRIPTION = (
        "Rows: frames. Columns: rainy, teacher output, student output, "
        "student attention maps A1..AN (heat maps)."
    )

    def render_panel(self) -> np.ndarray:
        from tf_deraindrop.utils.visualize import panel_rows

        rainy, teacher = self.sample
        result = self.model.generator(rainy, training=False)
        return panel_rows([rainy, teacher, result["outputs"][-1]], result["attention"], [])


class DistillProgress(RunProgress):
    """`RunProgress` showing the distillation's few numbers: the losses and the validation PSNR."""

    SHOWN = ("total", "distill", "attention", "val_psnr")
