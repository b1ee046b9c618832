"""NaN guard: stop training cleanly when the loss becomes NaN or infinite.

The check costs no host sync per batch: each batch's "is it finite" flag is folded into a
running flag on the device, and the flag is read at every ``nan_check_every_n_steps``
optimizer steps and at each epoch end.
"""

from __future__ import annotations

from typing import Any

from hookline.engine import Trainer
from hookline.manager import Callback
from hookline.settings import Options, Settings


class NanGuard(Callback):
    """Requests a stop with a clear reason when the training loss stops being finite.

    Checkpointing never saves while the loss is not finite, so the last good checkpoint is
    the one kept.  Setting: ``nan_check_every_n_steps`` (default 50).
    """

    def __init__(self, nan_check_every_n_steps: int = 50) -> None:
        self.nan_check_every_n_steps = nan_check_every_n_steps
        self._bad: Any = False
        self._since_step = 0

    def hookline_add_options(self, options: Options) -> None:
        options.add(
            "nan_check_every_n_steps", self.nan_check_every_n_steps,
            help="read the NaN flag every N steps", owner="nan_guard",
        )

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, ("nan_check_every_n_steps",))

    def on_train_batch_end(self, trainer: Trainer, loss: Any) -> None:
        value = trainer.task.detach(loss)
        not_finite = (value - value) != 0  # inf - inf and nan - nan are NaN; stays on device
        self._bad = self._bad | not_finite
        every = self.nan_check_every_n_steps
        if every and trainer.global_step % every == 0 and trainer.global_step != self._since_step:
            self._since_step = trainer.global_step
            self._check(trainer)

    def on_train_epoch_end(self, trainer: Trainer) -> None:
        self._check(trainer)

    def _check(self, trainer: Trainer) -> None:
        if bool(self._bad):
            trainer.request_stop(
                f"NaN guard: the loss became NaN or infinite in epoch {trainer.epoch + 1} "
                f"(by step {trainer.global_step}); the last finite checkpoint is kept"
            )
        self._bad = False
