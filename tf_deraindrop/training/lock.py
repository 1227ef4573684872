"""One run per out-dir: an advisory lock held for the run's lifetime.

The lock is an `fcntl.flock` on `OUT/.run.lock`, which the kernel releases
when the holder dies, even by `kill -9`; the file names the holder (process
id, host, start time) for the message a second run prints. A lock file that
still names a holder but is not locked was left by a process that died: it is
taken over with a warning.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

LOCK_FILE = ".run.lock"


class RunLockedError(RuntimeError):
    """Another live process is training in the same out-dir; the message names it."""


class RunLock:
    """Holds `OUT/.run.lock` while a run trains.

    Args:
        out_dir: the run folder.

    Example:
        >>> with RunLock("runs/demo"):  # doctest: +SKIP
        ...     train(...)
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = os.fspath(out_dir)
        self.path = os.path.join(self.out_dir, LOCK_FILE)
        self._fd: int | None = None
        #: Whether `acquire` made the lock file (a failed run then removes it).
        self.created = False

    def _holder(self) -> dict:
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            text = os.read(self._fd, 4096).decode("utf-8", "replace")
            return json.loads(text) if text.strip() else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        """Takes the lock.

        Raises:
            RunLockedError: another live process holds it.
        """
        os.makedirs(self.out_dir, exist_ok=True)
        while True:
            self.created = not os.path.exists(self.path)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            holder = self._holder()
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                break
            if self._same_file():
                break
            # Its holder removed the file (a failed first run) after we opened it: again.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            who = (
                f"process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"(started {holder.get('started', '?')})"
                if holder
                else "another process"
            )
            raise RunLockedError(
                f"{self.out_dir} is in use by {who}. Wait for that run to finish or stop it, "
                "or choose another --out-dir."
            ) from None
        holder = self._holder()
        if holder:
            print(
                f"WARNING: taking over the stale lock of {self.out_dir} left by process "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, which is gone.",
                file=sys.stderr,
                flush=True,
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, json.dumps(record).encode())
        os.fsync(self._fd)
        return self

    def _same_file(self) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return False

    def release(self, failed: bool = False) -> None:
        """Empties the lock file (a clean exit leaves no holder named) and unlocks it.

        Args:
            failed: the run failed; a lock file this run created is removed
                (still locked: a process waiting on it tries again).
        """
        if self._fd is None:
            return
        try:
            if failed and self.created:
                os.remove(self.path)
            else:
                os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind, value, traceback) -> None:
        self.release(failed=kind is not None)
