"""Distilling a generator into a `LiteGenerator`, the real-time student.

The teacher (the full generator, from `gen.pkl` or a `.keras` file) labels
rainy frames; the student learns its outputs, its attention maps and, with
Raindrop-layout pairs, the ground truth (`model.Distiller`); optionally its
intermediate feature maps through learned 1x1 adapters. Teacher outputs
are computed on the fly on each crop (in the teacher's precision,
`mixed_bfloat16` where the CPU has bfloat16 instructions), or once per frame
on whole frames and cached on disk (`cache_teacher`); validation frames are
always cached. A run keeps `train`'s conventions: `config.json`, checkpoints
that resume after `kill -9`, TensorBoard scalars and panels (rainy | teacher
| student | attention maps), and `generator.keras`, the student with the best
validation PSNR against the teacher.

Where things are:

- `config.py`: `DistillConfig` (the flags) and `DistillError`; no TensorFlow.
- `frames.py`: the frames of images, videos or pairs; `FrameStore`.
- `teacher.py`: the teacher loaded, in a faster precision, or cached (`TeacherCache`).
- `inputs.py`: `DistillInputs` (frames checked once) and the per-epoch `CropStream`.
- `model.py`: `Distiller`, the student and teacher with their `train_step`.
- `features.py`: `FeatureAdapters`, the learned 1x1 maps of the optional feature term.
- `callbacks.py`: validation against the teacher, panels, progress.
- `run.py`: `distill()`, one run, built on `tf_deraindrop.training`'s parts.

The command line is `python -m tf_deraindrop.distill`. The names below are
importable from this package; each loads its module (and TensorFlow) on first use.

Example:
    >>> from tf_deraindrop.training.distill import DistillConfig, distill
    >>> result = distill(DistillConfig(teacher="gen.pkl", data_dir="footage"))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_MODULES = {
    "config": ("DistillConfig", "DistillError"),
    "frames": ("Example", "FrameStore", "extract_frames", "find_examples", "split_validation"),
    "teacher": ("TeacherCache", "load_teacher", "teacher_in"),
    "inputs": ("CropStream", "DistillInputs", "epoch_seed"),
    "model": ("TERMS", "Distiller"),
    "features": ("FeatureAdapters", "feature_channels"),
    "callbacks": ("DistillLogger", "DistillProgress", "Validation"),
    "run": ("DistillResult", "build_distiller", "distill", "main_errors"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
