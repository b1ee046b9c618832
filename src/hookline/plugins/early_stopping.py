"""Early stopping: end training when a monitored metric stops improving (Keras' options)."""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, TextIO

from hookline.manager import Callback
from hookline.plugins.support import at_least, improves, monitored, require, resolve_mode
from hookline.run import TrainingRun
from hookline.settings import Options, Settings


class EarlyStopping(Callback):
    """Requests a stop, with the reason, when ``monitor`` has not improved for ``patience``
    epochs.

    :param monitor: the metric to watch (as reported at epoch end).
    :param mode: ``min``, ``max`` or ``auto`` (accuracy-like names are maximised).
    :param patience: epochs without improvement before stopping.
    :param min_delta: an improvement must exceed this.
    :param baseline: a value the metric must beat; epochs that do not count against patience
        from the start.
    :param start_from_epoch: epochs before this one are not watched (warm-up).
    :param check_finite: stop as soon as the metric is NaN or infinite.
    :param stopping_threshold: stop as soon as the metric reaches this (a good-enough goal).
    :param divergence_threshold: stop as soon as the metric is worse than this.
    :param restore_best_weights: at the end of training, put back the task state of the best
        epoch and say so (one line): the epoch that counted as best (by more than
        ``min_delta``), the one the stop line names, as in Keras.  When ``baseline`` is never
        beaten, the best epoch seen (improvements by more than ``min_delta`` again), as in
        Keras: a run that never reached the baseline ends on its best weights, not its last.
    :param stream: where the restore is announced (standard output by default).

    Each is also a setting of the same name (``patience=5`` on the command line).  Its counters
    travel in checkpoints, so a resumed run stops at the same epoch as an uninterrupted one.
    """

    #: Settings (the constructor's arguments), with their help text.
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "monitor": "metric that decides 'best'",
        "mode": "min, max or auto for the monitor",
        "patience": "epochs without improvement",
        "min_delta": "smallest improvement that counts",
        "baseline": "value to beat",
        "start_from_epoch": "first watched epoch",
        "check_finite": "stop on NaN/inf metric",
        "stopping_threshold": "stop when this is reached",
        "divergence_threshold": "stop when worse than this",
        "restore_best_weights": "restore the best epoch's weights at the end",
    }
    #: The settings whose default is None, with their type.
    OPTIONAL: ClassVar[Mapping[str, type]] = {
        "baseline": float, "stopping_threshold": float, "divergence_threshold": float
    }

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "auto",
        patience: int = 10,
        min_delta: float = 0.0,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        restore_best_weights: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.baseline, self.start_from_epoch = baseline, start_from_epoch
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        #: What a restore puts back: the best epoch and its value (the baseline's first
        #: beater and its successors, or the best seen while the baseline stands).
        self.best_seen: float | None = None
        self.best_seen_epoch: int | None = None
        self.best_state: dict[str, Any] | None = None
        self.stream = stream
        self._warned = False

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="early_stopping", types=self.OPTIONAL)

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        resolve_mode(self.monitor, self.mode)
        require("patience", self.patience, self.patience >= 0, "an integer >= 0")
        at_least("min_delta", self.min_delta, 0)
        require("start_from_epoch", self.start_from_epoch, self.start_from_epoch >= 0,
                "an integer >= 0")

    def on_train_start(self) -> None:
        if self.best is None and self.baseline is not None:
            self.best = self.baseline

    def on_fit_epoch_end(self, trainer: TrainingRun, metrics: dict[str, float]) -> None:
        if trainer.epoch < self.start_from_epoch:
            return
        value = monitored("early stopping", self.monitor, metrics)
        if value is None:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"early stopping: {self.monitor!r} is a validation metric and no "
                    "validation ran (yet); only epochs that validate count", stacklevel=2
                )
            return
        mode = resolve_mode(self.monitor, self.mode)
        counts = math.isfinite(value) and improves(value, self.best, mode, self.min_delta)
        unbeaten = self.best_epoch is None and math.isfinite(value)  # the baseline stands
        if counts or (unbeaten and improves(value, self.best_seen, mode, self.min_delta)):
            self.best_seen, self.best_seen_epoch = value, trainer.epoch
            if self.restore_best_weights:
                self.best_state = copy.deepcopy(trainer.task.state_dict())
        reason = self._reason(value, mode)
        if reason is not None:
            self.stopped_epoch = trainer.epoch
            trainer.request_stop(f"early stopping: {reason}")
            return
        if counts:
            self.best, self.best_epoch, self.wait = value, trainer.epoch, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = trainer.epoch
            best = "the baseline" if self.best_epoch is None else f"epoch {self.best_epoch + 1}"
            trainer.request_stop(
                f"early stopping: {self.monitor} has not improved for {self.wait} epochs "
                f"(best {self.best:.6g} at {best})"
            )

    def _reason(self, value: float, mode: str) -> str | None:
        if self.check_finite and not math.isfinite(value):
            return f"{self.monitor} is {value}"
        goal, limit = self.stopping_threshold, self.divergence_threshold
        if goal is not None and _at_least_as_good(value, goal, mode):
            return f"{self.monitor} reached {value:.6g} (threshold {goal:g})"
        if limit is not None and not _at_least_as_good(value, limit, mode):
            return f"{self.monitor} diverged to {value:.6g} (limit {limit:g})"
        return None

    def on_train_end(self, trainer: TrainingRun) -> None:
        if trainer.interrupted:
            return  # the run is not over: it resumes with the weights it had
        if self.restore_best_weights and self.best_state is not None:
            trainer.task.load_state_dict(self.best_state)
            assert self.best_seen_epoch is not None
            beaten = self.baseline is None or self.best_epoch is not None
            note = "" if beaten else f"; the baseline {self.baseline:g} was never beaten"
            if trainer.is_main:
                print(
                    f"early stopping: restored the weights of epoch {self.best_seen_epoch + 1} "
                    f"({self.monitor} {self.best_seen:.6g}{note})",
                    file=self.stream if self.stream is not None else sys.stdout, flush=True,
                )

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch, "best_seen": self.best_seen,
            "best_seen_epoch": self.best_seen_epoch, "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
        self.stopped_epoch, self.best_state = state["stopped_epoch"], state["best_state"]
        self.best_seen = state.get("best_seen", self.best)  # written before best_seen existed
        self.best_seen_epoch = state.get("best_seen_epoch", self.best_epoch)


def _at_least_as_good(value: float, reference: float, mode: str) -> bool:
    return value <= reference if mode == "min" else value >= reference
