"""Graceful stops on signals: SIGTERM (what SLURM, Kubernetes, spot-instance reclaim and
torchrun send), SIGUSR1 (what SLURM can send ahead of the time limit) and SIGINT (Ctrl-C).

The first signal interrupts the run (:meth:`hookline.TrainingRun.interrupt`): training stops once
the current step's gradients are applied, the checkpoint plugin writes ``last.pt`` (resumable
in the middle of the epoch), the summary says which signal stopped the run, and trackers are
closed as failed.  ``hookline train`` then exits with status 128 + the signal's number (143
for SIGTERM, 138 for SIGUSR1, 130 for SIGINT).  A second signal stops at once: SIGINT raises
``KeyboardInterrupt``, the others ``SystemExit(128 + number)``; the run's teardown still runs.
Under torchrun every rank stops at the same step.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

from hookline.manager import Callback
from hookline.run import TrainingRun

#: The signals handled, where the platform has them.
SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGINT") if hasattr(signal, name)
)


class GracefulStop(Callback):
    """Turns the first SIGTERM, SIGUSR1 or SIGINT during training into an interruption with a
    checkpoint, and a second one into an immediate stop.  The handlers are in place from the
    start of ``fit`` to its teardown, and only in the main thread (Python delivers signals
    there); the previous handlers are put back afterwards."""

    def __init__(self) -> None:
        #: The signal that interrupted the last run, or None.
        self.received: signal.Signals | None = None
        self._trainer: TrainingRun | None = None
        self._previous: dict[int, Any] = {}

    def on_pretrain_routine_start(self, trainer: TrainingRun) -> None:
        self.received, self._trainer = None, trainer
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in SIGNALS}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number)
        if self.received is None and self._trainer is not None:
            self.received = name
            self._trainer.interrupt(f"stopped by {name.name}")
            sys.stderr.write(
                f"hookline: {name.name} received: stopping after the current step, with a "
                "checkpoint (send it again to stop at once)\n"
            )
            return
        self._restore()
        if number == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + number)

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def teardown(self) -> None:
        self._restore()
        self._trainer = None
