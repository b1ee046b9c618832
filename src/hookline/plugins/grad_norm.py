"""Gradient norm: the global L2 norm of the final gradients before each optimizer step, reported
as ``train/grad_norm`` (the mean over the steps of a log interval, and of the epoch).

The norm comes from the Task protocol (``task.gradient_norm()``, a scalar on the device: on JAX
computed inside the compiled training step), is added up on the device, and reaches the host
once per log interval and once per epoch: no host sync per step.  It is read at
``on_before_optimizer_step``, where gradients are accumulated over the step's batches and
unscaled, before clipping (the norm ``clip_grad_norm_`` returns, and what Hugging Face logs as
``grad_norm``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hookline.manager import Callback
from hookline.run import Run, TrainingRun


class GradNorm(Callback):
    """Reports the gradients' global norm as ``train/grad_norm``.

    At each training log interval it fires one more ``on_log(phase="train")`` record holding
    the interval's mean norm (next to the engine's record of the loss), and it adds the
    epoch's mean norm to the epoch's metrics (``results.csv``, trackers, the summary).
    """

    error_policy = "disable"  # an observer: a failure drops it, the run goes on

    def __init__(self) -> None:
        self._interval: tuple[Any, int] | None = None
        self._epoch: tuple[Any, int] | None = None
        self._logging = False

    def on_train_epoch_start(self) -> None:
        self._interval = self._epoch = None

    def on_before_optimizer_step(self, trainer: TrainingRun) -> None:
        norm = trainer.task.gradient_norm()
        self._interval = _added(self._interval, norm)
        self._epoch = _added(self._epoch, norm)

    def on_log(
        self, run: Run, metrics: Mapping[str, float], step: int, epoch: int, phase: str
    ) -> None:
        if phase != "train" or self._logging or self._interval is None:
            return
        total, count = self._interval
        self._interval = None
        value = {"train/grad_norm": run.task.to_float(total) / count}
        self._logging = True  # the record fired below reaches this hook too
        try:
            run.call(
                "on_log", run=run, metrics=MappingProxyType(value), step=step, epoch=epoch,
                phase="train",
            )
        finally:
            self._logging = False

    def on_train_epoch_end(self, trainer: TrainingRun) -> None:
        if self._epoch is not None:
            total, count = self._epoch
            trainer.metrics["train/grad_norm"] = trainer.task.to_float(total) / count


def _added(running: tuple[Any, int] | None, norm: Any) -> tuple[Any, int]:
    """``running`` (a device sum and a count) with ``norm`` added, still on the device."""
    return (norm, 1) if running is None else (running[0] + norm, running[1] + 1)
