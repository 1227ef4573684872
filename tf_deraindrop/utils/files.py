"""Files written whole or not at all: atomic writes, and the partial files of killed writers.

Kept free of TensorFlow at import, so a tool can check its arguments before
paying for the import.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path beside `path`, renamed over it when the block succeeds.

    The temporary name starts with a dot (hidden from globs such as
    `*.tfrecord`) and keeps the suffix, so writers that pick the format from
    it (PIL, `keras.Model.save`) still can. If the block raises, whatever it
    wrote there (a file or a folder) is removed and `path` is left as it was.
    The folder of `path` is created.

    Args:
        path: the file (or folder) to write.

    Example:
        >>> with atomic_path("out/report.csv") as tmp:  # doctest: +SKIP
        ...     with open(tmp, "w") as f:
        ...         f.write("key,psnr\\n")
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base, suffix = os.path.splitext(os.path.basename(path))
    # The process id keeps two writers of the same file (workers) apart.
    tmp = os.path.join(directory, f".{base}.partial{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through `atomic_path`: a reader never sees half of it.

    Args:
        path: the file to write (its folder is created).
        text: the whole content.
    """
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


#: `atomic_path`'s temporary names: `.<base>.partial<pid><suffix>`.
_PARTIAL_NAME = re.compile(r"^\..+\.partial(?P<pid>\d+)(\.[^.]*)?$")


def remove_stale_partials(directory: str | os.PathLike) -> list[str]:
    """Removes the temporaries `atomic_path` left in `directory` when its writer was killed.

    A temporary is stale when the process in its name no longer runs on
    this machine (`kill -9`, a power cut); those of live writers are kept.
    Returns the paths removed. Errors (a folder that is not there) are ignored.

    Example:
        >>> remove_stale_partials("derained/")  # doctest: +SKIP
        ['derained/.photo.partial4242.png']
    """
    directory = os.fspath(directory)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _PARTIAL_NAME.match(name)
        if not match or _running(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or not a pid at all: keep it)
    return True


class FolderWriteError(OSError):
    """An output folder that cannot be created or written; the message names it and why."""


def ensure_writable_folder(path: str | os.PathLike, what: str = "") -> str:
    """Creates the folder `path` if needed and checks that a file can be written in it.

    Called before a long job (loading a model, training) so that a read-only
    or misspelled output fails at once. Returns the path.

    Args:
        path: the folder.
        what: how the user named it, e.g. `"--output "`.

    Raises:
        FolderWriteError: it cannot be created or written (read-only filesystem,
            no permission, a file in the way); the message names it.
    """
    import tempfile

    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.partial", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise FolderWriteError(f"{what}{path}: cannot write there ({err.strerror or err})") from err
    return path
