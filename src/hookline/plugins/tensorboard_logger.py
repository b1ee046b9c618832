"""TensorBoard: scalars and hyperparameters, in the run directory (``tensorboard --logdir runs``).

Epoch metrics are plotted against the epoch, log-interval means (``..._step``) against the
optimizer step.  The hyperparameters (the run's settings) are written once the first epoch's
metrics exist, with those metrics as the HParams dashboard's columns.  Writing goes through
``torch.utils.tensorboard``; the ``tensorboard`` extra installs the package it needs.
"""

from __future__ import annotations

from typing import Any

from hookline.engine import Phase
from hookline.plugins.loggers import Scalar, TrackerLogger


class TensorBoardLogger(TrackerLogger):
    """Writes TensorBoard event files into the run directory."""

    package = "tensorboard,torch"
    extra = "tensorboard"

    def __init__(self) -> None:
        super().__init__()
        self.writer: Any = None
        self._params: dict[str, Scalar] | None = None

    def start(self, run: Phase, params: dict[str, Scalar]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.save_dir))
        self._params = params

    def log(self, metrics: dict[str, float], step: int, epoch: int, phase: str) -> None:
        x = step if phase == "train" else epoch
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, x)
        if phase != "train":
            if self._params is not None:
                self._write_hparams(self._params, metrics)
                self._params = None
            self.writer.flush()

    def _write_hparams(self, params: dict[str, Scalar], metrics: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # the metrics' values are the scalars already logged under the same names
        for summary in hparams(params, metrics):
            self.writer.file_writer.add_summary(summary)

    def finish(self, failed: bool) -> None:
        self.writer.close()
        self.writer = None
