"""Time limit: stop cleanly before a wall-clock budget runs out, leaving time for the epoch's
end (validation and the checkpoint that makes the run resumable)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import ClassVar

from hookline.manager import Callback
from hookline.plugins.support import at_least
from hookline.run import TrainingRun
from hookline.settings import Options, Settings


class TimeLimit(Callback):
    """Requests a stop when the time left would not cover one more optimizer step plus the
    epoch's end (validation, checkpoint), measured as the run goes.

    Setting: ``time_limit`` in seconds (0: no limit), counted from the start of ``fit`` so that
    setup and loading a checkpoint to resume from are part of the budget.  The stop happens at
    an optimizer-step boundary, so that the checkpoint written at the epoch's end resumes exactly.
    """

    SETTINGS: ClassVar[Mapping[str, str]] = {
        "time_limit": "wall-clock budget in seconds from the start of fit (0: none)"
    }

    def __init__(self, time_limit: float = 0.0) -> None:
        self.time_limit = time_limit
        self.started = 0.0
        self._last = 0.0
        self._longest_step = 0.0
        self._epoch_end_started = 0.0
        self._longest_epoch_end = 0.0

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="time_limit")

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        at_least("time_limit", self.time_limit, 0)

    def idle_hooks(self) -> tuple[str, ...]:
        """Without a limit there is nothing to check after each optimizer step."""
        return () if self.time_limit else ("on_params_update",)

    def on_pretrain_routine_start(self) -> None:
        self.started = time.monotonic()

    def on_train_start(self) -> None:
        self._last = time.monotonic()

    def on_params_update(self, trainer: TrainingRun) -> None:
        if not self.time_limit:
            return
        now = time.monotonic()
        self._longest_step = max(self._longest_step, now - self._last)
        self._last = now
        elapsed = now - self.started
        if elapsed + 2 * self._longest_step + self._longest_epoch_end >= self.time_limit:
            trainer.request_stop(
                f"time limit: {elapsed:.0f} s of {self.time_limit:g} s used; stopping with a "
                "checkpoint to resume from"
            )

    def on_train_epoch_end(self) -> None:
        self._epoch_end_started = time.monotonic()

    def on_train_epoch_start(self) -> None:
        if self._epoch_end_started:
            spent = time.monotonic() - self._epoch_end_started
            self._longest_epoch_end = max(self._longest_epoch_end, spent)
        self._last = time.monotonic()
