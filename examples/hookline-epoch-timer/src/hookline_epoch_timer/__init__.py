"""An example third-party hookline plugin: each epoch's wall-clock duration as a metric.

It adds ``time/epoch`` to the epoch's metrics (so every logger records it) and declares one
setting, ``epoch_timer_unit`` (``"s"`` or ``"ms"``).
"""

from __future__ import annotations

import time

import hookline


class EpochTimer(hookline.Callback):
    """Measures each training epoch, validation included, and reports it as ``time/epoch``."""

    #: The hook-API versions it was written for (a later major version is refused cleanly).
    hookline_api = ">=1.1,<2"
    #: An observer: a failure drops it with one line and the run goes on.
    error_policy = "disable"

    def __init__(self) -> None:
        self.scale = 1.0
        self._started = 0.0

    def hookline_add_options(self, options: hookline.Options) -> None:
        options.add(
            "epoch_timer_unit", "s", choices=("s", "ms"), help="unit of time/epoch: s or ms"
        )

    def hookline_configure(self, settings: hookline.Settings) -> None:
        self.scale = 1000.0 if settings["epoch_timer_unit"] == "ms" else 1.0

    def on_train_epoch_start(self) -> None:
        self._started = time.perf_counter()

    def on_fit_epoch_end(self, metrics: dict[str, float]) -> None:
        metrics["time/epoch"] = (time.perf_counter() - self._started) * self.scale
