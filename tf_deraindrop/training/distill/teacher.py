"""The teacher: loaded in float32, run on the fly in a faster precision, or cached on disk.

On the fly, the teacher labels each training crop in the run's
`--teacher-precision` (`teacher_in`: a frozen twin with the same weights).
`TeacherCache` runs it once per whole frame instead and keeps its outputs on
disk; validation always reads them from there.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

from tf_deraindrop.training.distill.config import DistillError
from tf_deraindrop.training.distill.frames import Example, FrameStore, safe_name
from tf_deraindrop.utils.files import atomic_path, remove_stale_partials


def load_teacher(path: str):
    """The teacher generator in `path`, float32. DistillError naming the file if unusable."""
    from tf_deraindrop.inference.loading import WeightsError, load_generator_weights
    from tf_deraindrop.models.dtype import float32_generator

    try:
        teacher = load_generator_weights(path)
    except WeightsError as err:
        raise DistillError(f"--teacher {path}: {err}") from err
    return float32_generator(teacher)


def teacher_in(teacher, precision: str):
    """`teacher` under `precision` (a twin with the same weights), frozen.

    On 2 cores with AVX512_BF16 the teacher runs about 3x faster in
    `mixed_bfloat16` (benchmarks/results/generator_cpu.txt).
    """
    if precision == "float32":
        return teacher
    twin = type(teacher).from_config({**teacher.get_config(), "dtype": precision})
    twin.build((None, None, None, 3))
    twin.set_weights(teacher.get_weights())
    twin.trainable = False
    return twin


class TeacherCache:
    """The teacher's outputs on whole frames, one `.npz` (float16) per frame under `folder`.

    Args:
        folder: where the files go (created).

    Example:
        >>> cache = TeacherCache("runs/lite/teacher_cache")  # doctest: +SKIP
        >>> cache.fill(examples, FrameStore(), teacher, "validation")  # doctest: +SKIP
        >>> cache.get(examples[0])["out"].shape  # doctest: +SKIP
        (480, 720, 3)
    """

    KEYS = ("quarter", "half", "out", "attention")

    def __init__(self, folder: str):
        self.folder = folder
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise DistillError(f"{folder}: cannot write the teacher cache ({_why(err)})") from err
        remove_stale_partials(folder)  # of a run killed while filling it

    def path(self, example: Example) -> str:
        # The rainy file's path in the key: frames of two folders may share a name.
        digest = hashlib.sha1(os.path.abspath(example.rainy).encode()).hexdigest()[:10]
        return os.path.join(self.folder, f"{safe_name(example.name)}_{digest}.npz")

    def fill(self, examples: Sequence[Example], frames: FrameStore, teacher, what: str) -> None:
        """Runs the teacher on every example not yet cached (written atomically)."""
        missing = [e for e in examples if not os.path.isfile(self.path(e))]
        if not missing:
            return
        print(f"Teacher outputs for {len(missing)} {what} frame(s) ...", flush=True)
        for example in missing:
            image = frames.get(example.rainy)
            result = teacher.predict_on_batch(image[None])
            arrays = [result["outputs"][0], result["outputs"][1], result["outputs"][2]]
            arrays.append(result["attention"][-1])
            values = {k: np.asarray(a)[0].astype(np.float16) for k, a in zip(self.KEYS, arrays)}
            path = self.path(example)
            try:
                with atomic_path(path) as tmp:
                    np.savez(tmp, **values)
            except OSError as err:
                raise DistillError(
                    f"{path}: cannot write the teacher's outputs ({_why(err)}); nothing partial "
                    "was left. Free some space and run the same command again."
                ) from err

    def get(self, example: Example) -> dict[str, np.ndarray]:
        with np.load(self.path(example)) as data:
            return {k: data[k].astype(np.float32) for k in self.KEYS}


def _why(err: OSError) -> str:
    return err.strerror or str(err)
