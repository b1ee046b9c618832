"""NaN guard: stop training cleanly when the loss becomes NaN or infinite.

It costs nothing per batch: a NaN or infinite loss in any batch makes the running mean that
the engine reports non-finite, so the guard reads the mean at every log interval
(``on_log``, ``log_every_n_steps``) and at each epoch end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hookline.manager import Callback
from hookline.run import Run, TrainingRun


class NanGuard(Callback):
    """Requests a stop with a clear reason when the training loss stops being finite.

    Checkpointing never saves while the loss is not finite, so the last good checkpoint is
    the one kept.
    """

    def on_log(self, run: Run, metrics: Mapping[str, float], phase: str) -> None:
        if phase == "train" and isinstance(run, TrainingRun):
            self._check(run, metrics.get("train/loss", 0.0))

    def on_train_epoch_end(self, trainer: TrainingRun) -> None:
        self._check(trainer, trainer.metrics.get("train/loss", 0.0))

    def _check(self, trainer: TrainingRun, loss: float) -> None:
        if not math.isfinite(loss):
            trainer.request_stop(
                f"NaN guard: the loss became NaN or infinite in epoch {trainer.epoch + 1} "
                f"(by step {trainer.global_step}); checkpoints are written only while it is "
                "finite"
            )
