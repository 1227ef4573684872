"""What a file is, from its first bytes: for messages about a file of the wrong kind.

Example:
    >>> file_kind("derain.tflite")  # doctest: +SKIP
    'a TensorFlow Lite model (.tflite)'
"""

from __future__ import annotations

import os
import zipfile

#: What the weights loaders take, for messages.
ACCEPTED_WEIGHTS = "a .keras file, a .weights.h5 file or the authors' gen.pkl"

_MAGIC = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"RIFF", "a RIFF file (a WebP image or an AVI video)"),
    (0, b"BM", "a BMP image"),
    (4, b"TFL3", "a TensorFlow Lite model (.tflite)"),
    (4, b"ftyp", "an MP4/MOV video"),
    (0, b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file (.h5)"),
    (0, b"\x80", "a Python pickle"),
)


def file_kind(path: str | os.PathLike) -> str:
    """A phrase naming what `path` holds: "a PNG image", "a Keras model (.keras zip)", ...

    "an unknown kind of file" when the first bytes say nothing known.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        return f"a file that cannot be read ({err.strerror or err})"
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return "an unknown kind of file"


def _zip_kind(path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return "a damaged zip file"
    if "config.json" in names and any(n.endswith(".h5") for n in names):
        return "a Keras model (.keras zip)"
    if any(n.endswith("data.pkl") for n in names):
        return "a PyTorch checkpoint (zip)"
    return "a zip file"


def is_zip(path: str | os.PathLike) -> bool:
    """Whether `path` starts like a zip file (what a `.keras` file is)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False
