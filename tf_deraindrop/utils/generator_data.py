"""`tf.data.Dataset.from_generator` that lets the process exit on the first Ctrl-C.

`from_generator` runs the Python generator on a tf.data thread (the
prefetch's). When Ctrl-C stops the training loop, the iterator is destroyed
from the main thread, which holds the GIL while it waits for that thread;
if the thread is inside the generator, or about to enter it, it waits for
the GIL in turn: both wait forever, at 0% CPU (`distill` hung so after
"Interrupted"). So a `GeneratorSource` stops first: on Ctrl-C
(`stop_on_interrupt`) its generators end, and the main thread waits, with
the GIL released, until no thread is inside one, before it lets the
`KeyboardInterrupt` unwind and the iterator go.

Example:
    >>> source = GeneratorSource()
    >>> ds = source.dataset(lambda: iter(batches), signature)  # doctest: +SKIP
    >>> with stop_on_interrupt(source):  # doctest: +SKIP
    ...     model.fit(ds)
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator

_END = object()


class GeneratorSource:
    """Makes stoppable `from_generator` datasets; `stop()` ends all of them.

    Args:
        settle: seconds no thread may have been inside a generator for
            `stop()` to return (tf.data converts a yielded item in Python
            just after it leaves the generator).
    """

    def __init__(self, settle: float = 0.3):
        self.settle = settle
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._inside = 0
        self._left = 0.0

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def wrap(self, iterator: Iterator) -> Iterator:
        """`iterator`'s items until it ends or `stop()` is called; tracks who is inside."""
        while not self._stopped.is_set():
            with self._lock:
                self._inside += 1
            try:
                item = next(iterator, _END)
            finally:
                with self._lock:
                    self._inside -= 1
                    self._left = time.monotonic()
            if item is _END:
                return
            yield item

    def dataset(self, make_iterator: Callable[[], Iterator], output_signature):
        """`tf.data.Dataset.from_generator` over `wrap(make_iterator())`."""
        import tensorflow as tf

        return tf.data.Dataset.from_generator(
            lambda: self.wrap(make_iterator()), output_signature=output_signature
        )

    def stop(self, timeout: float = 10.0) -> bool:
        """Ends every generator; waits until none is running. False if `timeout` passed first."""
        self._stopped.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = not self._inside and time.monotonic() - self._left >= self.settle
            if idle:
                return True
            time.sleep(0.02)  # the GIL released: a generator thread can finish its item
        return False


@contextlib.contextmanager
def stop_on_interrupt(source: GeneratorSource):
    """Within the block, Ctrl-C (SIGINT) stops `source` before `KeyboardInterrupt` is raised.

    Only in the main thread (where Python runs signal handlers); elsewhere
    the block runs as it is. A second Ctrl-C during the stop gets the
    handler that was there before.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler not set from Python
        previous = signal.default_int_handler

    def interrupted(signum, frame):
        signal.signal(signal.SIGINT, previous)
        source.stop()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
