"""Console output: one line of metrics per epoch, and where the run's files are."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from hookline.engine import Predictor
from hookline.manager import Callback
from hookline.plugins.support import format_metrics
from hookline.run import Run, TrainingRun


class ConsoleLogger(Callback):
    """Prints each epoch's metrics (from ``on_log``) and a validation's result.  The end of
    training is reported by :class:`hookline.plugins.summary.RunSummary`.

    :param stream: where to print; standard output by default.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def _print(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def on_train_start(self, trainer: TrainingRun) -> None:
        where = f" -> {trainer.save_dir}" if trainer.save_dir is not None else ""
        self._print(f"training for {trainer.epochs} epochs{where}")

    def on_log(self, run: Run, metrics: Mapping[str, float], epoch: int, phase: str) -> None:
        if phase == "epoch" and isinstance(run, TrainingRun):
            self._print(f"epoch {epoch + 1}/{run.epochs}  {format_metrics(metrics)}")
        elif phase == "val":
            self._print(f"validation  {format_metrics(metrics)}")

    def on_predict_end(self, predictor: Predictor) -> None:
        where = f"; saved to {predictor.save_dir}" if predictor.save_dir is not None else ""
        self._print(f"predicted {len(predictor.results)} batches{where}")
