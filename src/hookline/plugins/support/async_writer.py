"""One job at a time in a background thread: what asynchronous checkpoints are written with.

The training thread hands a job over (:meth:`BackgroundWriter.submit`) and carries on; it
collects the outcome later (:meth:`BackgroundWriter.collect`): the job's tag once it succeeded,
or its exception, raised in the training thread.  A new job waits for the one before it, so at
most one is in flight.

The worker thread lives as long as the writer is open (:meth:`BackgroundWriter.close`), waiting
for jobs: handing a job to a thread that already runs costs the training thread nothing, where
starting a thread makes it wait for the new thread to let go of the GIL (up to the interpreter's
switch interval, 5 ms).  On Linux the worker runs at a lower priority than the training thread
(``nice`` +10), so that on a busy machine the loop gets a core first.  It is a daemon thread,
and an interpreter that exits normally first waits for the job in flight (an ``atexit`` hook):
a checkpoint being written is completed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Tag = TypeVar("Tag")
#: How much lower the worker thread's priority is than the training thread's (``nice``).
NICENESS = 10

#: Every open writer, so that the interpreter's exit waits for their jobs.
_OPEN: weakref.WeakSet[BackgroundWriter[Any]] = weakref.WeakSet()


class BackgroundWriter(Generic[Tag]):
    """Runs one job at a time in a background thread and hands its outcome back.

    :param name: the worker thread's name (shown by debuggers and ``py-spy``).
    """

    def __init__(self, name: str = "hookline-writer") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._tag: Tag | None = None
        self._error: BaseException | None = None
        self._pending = False

    @property
    def pending(self) -> bool:
        """Whether a job was submitted and its outcome not collected yet."""
        return self._pending

    @property
    def running(self) -> bool:
        """Whether a job is still running."""
        return self._pending and not self._done.is_set()

    def submit(self, job: Callable[[], Any], tag: Tag) -> None:
        """Start ``job`` in the background; :meth:`collect` returns ``tag`` once it succeeded.

        :raises RuntimeError: when the previous job's outcome was not collected.
        """
        if self._pending:
            raise RuntimeError("collect the previous job's outcome before submitting another")
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
            _OPEN.add(self)

        def run() -> None:
            try:
                job()
            except BaseException as error:  # handed to the training thread by collect()
                self._error = error
            finally:
                self._done.set()

        self._tag, self._error, self._pending = tag, None, True
        self._done.clear()
        self._jobs.put(run)

    def _work(self) -> None:
        _yield_to_training()
        while (job := self._jobs.get()) is not None:
            job()

    def collect(self, *, wait: bool) -> Tag | None:
        """The finished job's tag (once), or None when there is none or (``wait=False``) it is
        still running; with ``wait``, blocks until it ends.

        :raises BaseException: the job's own exception, in the caller's thread (once).
        """
        if not self._pending or (not wait and not self._done.is_set()):
            return None
        self._done.wait()
        tag, error = self._tag, self._error
        self._pending, self._tag, self._error = False, None, None
        if error is not None:
            raise error
        return tag

    def close(self) -> None:
        """Wait for the job in flight (its outcome stays to be collected), then end the worker
        thread; a later :meth:`submit` starts a new one."""
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._jobs.put(None)
            thread.join()
        _OPEN.discard(self)


def _yield_to_training(niceness: int = NICENESS) -> None:
    """Lower this thread's scheduling priority (Linux: threads have their own), so that on a
    busy machine the training thread gets a core first and the write takes what is left."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread)
                           + niceness)


@atexit.register
def _finish_writes() -> None:
    """At a normal exit, let every job in flight end (its file completes)."""
    for writer in list(_OPEN):
        writer.close()
