"""Learning-rate scheduling: any torch scheduler per step or per epoch, ReduceLROnPlateau on
a monitored metric, and linear warm-up in front of either; the rate is reported as ``lr``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from hookline.engine import Trainer
from hookline.manager import Callback
from hookline.settings import Options, Settings, SettingsError

SCHEDULES = ("none", "step", "cosine", "linear", "plateau")


class LRScheduler(Callback):
    """Drives a learning-rate scheduler from the training loop.

    :param scheduler: ``f(optimizer) -> scheduler`` (any ``torch.optim.lr_scheduler``), used
        instead of the ``schedule`` setting.
    :param interval: ``"epoch"`` (step after each epoch) or ``"step"`` (after each optimizer
        step).  ``ReduceLROnPlateau`` always steps per epoch, on ``monitor``.
    :param warmup_steps: raise the rate linearly over this many optimizer steps, from
        ``warmup_start_factor`` times each group's rate, before the scheduler takes over.

    Settings (command line): ``schedule`` (none, step, cosine, linear, plateau),
    ``lr_step_size`` and ``lr_gamma`` (step), ``lr_factor`` and ``lr_patience`` (plateau, on
    ``monitor``), ``warmup_steps``.  ``lr`` (and ``lr/pg<i>`` for further parameter groups) is
    added to each epoch's metrics.  The scheduler's state travels in checkpoints.
    """

    #: Settings (the constructor's arguments), with their help text.
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "schedule": "none, step, cosine, linear, plateau",
        "lr_step_size": "step: epochs per decay",
        "lr_gamma": "step: decay factor",
        "lr_factor": "plateau: decay factor",
        "lr_patience": "plateau: epochs to wait",
        "monitor": "metric that decides 'best'",
        "warmup_steps": "linear warm-up steps",
        "warmup_start_factor": "warm-up starting fraction",
    }

    def __init__(
        self,
        scheduler: Callable[[Any], Any] | None = None,
        *,
        interval: str = "epoch",
        schedule: str = "none",
        lr_step_size: int = 10,
        lr_gamma: float = 0.1,
        lr_factor: float = 0.1,
        lr_patience: int = 5,
        monitor: str = "val/loss",
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.1,
    ) -> None:
        if interval not in ("epoch", "step"):
            raise ValueError(f"interval must be 'epoch' or 'step', got {interval!r}")
        self.factory, self.interval = scheduler, interval
        self.schedule, self.lr_step_size, self.lr_gamma = schedule, lr_step_size, lr_gamma
        self.lr_factor, self.lr_patience, self.monitor = lr_factor, lr_patience, monitor
        self.warmup_steps, self.warmup_start_factor = warmup_steps, warmup_start_factor
        self.scheduler: Any = None
        self.optimizer: Any = None
        self.base_lrs: list[float] = []
        self.steps = 0
        self._pending: dict[str, Any] | None = None

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="lr_scheduler")

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        if self.schedule not in SCHEDULES:
            choices = ", ".join(SCHEDULES)
            raise SettingsError(f"schedule must be one of {choices}, got {self.schedule!r}")

    def idle_hooks(self) -> tuple[str, ...]:
        """Without warm-up or a per-step schedule, nothing happens after an optimizer step."""
        return () if self.warmup_steps or self.interval == "step" else ("on_params_update",)

    # -- set-up --------------------------------------------------------------------------------

    def on_train_start(self, trainer: Trainer) -> None:
        optimizer = getattr(trainer.task, "optimizer", None)
        if optimizer is None or not hasattr(optimizer, "param_groups"):
            warnings.warn("lr_scheduler: the task has no torch optimizer; nothing to schedule",
                          stacklevel=2)
            return
        self.optimizer = optimizer
        if self._pending is None:
            self.base_lrs = [group["lr"] for group in optimizer.param_groups]
            self.steps = 0
        self.scheduler = self._create(trainer, optimizer)
        if self._pending is not None:
            self.base_lrs, self.steps = self._pending["base_lrs"], self._pending["steps"]
            if self.scheduler is not None and self._pending["scheduler"] is not None:
                self.scheduler.load_state_dict(self._pending["scheduler"])
            self._pending = None
        elif self.warmup_steps:
            self._set_lrs(self.warmup_start_factor)

    def _create(self, trainer: Trainer, optimizer: Any) -> Any:
        from torch.optim import lr_scheduler as schedulers

        if self.factory is not None:
            return self.factory(optimizer)
        if self.schedule == "step":
            return schedulers.StepLR(optimizer, self.lr_step_size, self.lr_gamma)
        if self.schedule == "cosine":
            return schedulers.CosineAnnealingLR(optimizer, max(1, trainer.epochs))
        if self.schedule == "linear":
            total = max(1, trainer.epochs)
            return schedulers.LambdaLR(optimizer, _LinearDecay(total))
        if self.schedule == "plateau":
            return schedulers.ReduceLROnPlateau(
                optimizer, mode="min", factor=self.lr_factor, patience=self.lr_patience
            )
        return None

    def _plateau(self) -> bool:
        return type(self.scheduler).__name__ == "ReduceLROnPlateau"

    def _set_lrs(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    # -- stepping ------------------------------------------------------------------------------

    def on_params_update(self) -> None:
        if self.optimizer is None:
            return
        self.steps += 1
        if self.steps <= self.warmup_steps:
            start = self.warmup_start_factor
            self._set_lrs(start + (1.0 - start) * self.steps / self.warmup_steps)
        elif self.interval == "step" and self.scheduler is not None and not self._plateau():
            self.scheduler.step()

    def on_train_epoch_end(self, trainer: Trainer) -> None:
        if self.optimizer is None:
            return
        for index, group in enumerate(self.optimizer.param_groups):
            trainer.metrics["lr" if index == 0 else f"lr/pg{index}"] = float(group["lr"])

    def on_fit_epoch_end(self, metrics: dict[str, float]) -> None:
        # per epoch, the scheduler counts from the first epoch end after the warm-up ended
        if self.scheduler is None or (self.warmup_steps and self.steps <= self.warmup_steps):
            return
        if self._plateau():
            value = metrics.get(self.monitor)
            if value is not None and math.isfinite(value):
                self.scheduler.step(value)
        elif self.interval == "epoch":
            self.scheduler.step()

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        scheduler = self.scheduler.state_dict() if self.scheduler is not None else None
        if scheduler is not None:
            scheduler = {k: v for k, v in scheduler.items() if not callable(v)}
            scheduler.pop("lr_lambdas", None)
        return {"base_lrs": list(self.base_lrs), "steps": self.steps, "scheduler": scheduler}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = dict(state)


class _LinearDecay:
    """Multiplier falling linearly from 1 to 0 over ``total`` epochs."""

    def __init__(self, total: int) -> None:
        self.total = total

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.total)
