"""Learning-rate scheduling through the Task protocol, so that it works on every backend: step
decay, cosine and linear annealing, reduce-on-plateau, any multiplier function, and linear
warm-up in front of any of them; the rate is reported as ``lr``.

The schedules follow PyTorch's schedulers of the same names (``StepLR``,
``CosineAnnealingLR``, ``LambdaLR`` falling linearly, ``ReduceLROnPlateau`` with its default
relative threshold), and the tests check them against those schedulers step for step; no
framework is imported here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from hookline.errors import UserError
from hookline.manager import Callback
from hookline.plugins.support import monitored, require, resolve_mode
from hookline.run import StateTask, TrainingRun
from hookline.settings import Options, Settings, SettingsError

SCHEDULES = ("none", "step", "cosine", "linear", "plateau")
#: ReduceLROnPlateau's defaults: a relative improvement must exceed this to count ...
PLATEAU_THRESHOLD = 1e-4
#: ... and a reduction smaller than this is not made.
PLATEAU_EPS = 1e-8


class LRScheduler(Callback):
    """Sets each parameter group's learning rate to its base rate times a schedule's factor.

    :param lr_lambda: ``f(t) -> factor``, used instead of ``schedule``: ``t`` counts the
        scheduler's steps (epochs, or optimizer steps with ``interval="step"``).
    :param interval: ``"epoch"`` (step after each epoch) or ``"step"`` (after each optimizer
        step).  The plateau schedule always steps per epoch, on ``monitor``.
    :param schedule: ``none``, ``step`` (times ``lr_gamma`` every ``lr_step_size`` steps),
        ``cosine`` and ``linear`` (annealing to 0 over ``lr_horizon`` steps), ``plateau``
        (times ``lr_factor`` after ``lr_patience`` epochs without improvement of ``monitor``).
    :param lr_horizon: the length of the cosine and linear schedules, in scheduler steps;
        0 means the whole run (its epochs, or its optimizer steps when the training data has a
        length).
    :param warmup_steps: raise the rate linearly over this many optimizer steps, from
        ``warmup_start_factor`` times each group's rate, before the schedule takes over.

    Each but ``lr_lambda`` and ``interval`` is also a setting.  ``lr`` (and ``lr/pg<i>`` for
    further parameter groups) is added to each epoch's metrics.  The schedule's state travels
    in checkpoints.  A task that exposes no learning rate (a JAX optimizer built without
    ``optax.inject_hyperparams``) gets no ``lr``, with a warning, and a schedule, warm-up or
    ``lr_lambda`` asked of it is refused when training starts.
    """

    #: Settings (the constructor's arguments), with their help text.
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "schedule": "none, step, cosine, linear, plateau",
        "lr_step_size": "step: epochs per decay",
        "lr_gamma": "step: decay factor",
        "lr_horizon": "cosine/linear: length in steps (0: the run)",
        "lr_factor": "plateau: decay factor",
        "lr_patience": "plateau: epochs to wait",
        "monitor": "metric that decides 'best'",
        "mode": "min, max or auto for the monitor",
        "warmup_steps": "linear warm-up steps",
        "warmup_start_factor": "warm-up starting fraction",
    }

    def __init__(
        self,
        lr_lambda: Callable[[int], float] | None = None,
        *,
        interval: str = "epoch",
        schedule: str = "none",
        lr_step_size: int = 10,
        lr_gamma: float = 0.1,
        lr_horizon: int = 0,
        lr_factor: float = 0.1,
        lr_patience: int = 5,
        monitor: str = "val/loss",
        mode: str = "auto",
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.1,
    ) -> None:
        if interval not in ("epoch", "step"):
            raise ValueError(f"interval must be 'epoch' or 'step', got {interval!r}")
        self.lr_lambda, self.interval = lr_lambda, interval
        self.schedule, self.lr_step_size, self.lr_gamma = schedule, lr_step_size, lr_gamma
        self.lr_horizon = lr_horizon
        self.lr_factor, self.lr_patience = lr_factor, lr_patience
        self.monitor, self.mode = monitor, mode
        self.warmup_steps, self.warmup_start_factor = warmup_steps, warmup_start_factor
        self.task: StateTask | None = None
        self.base_lrs: list[float] = []
        #: optimizer steps taken, and the schedule's own steps (after the warm-up)
        self.steps = 0
        self.t = 0
        self.horizon = 1
        #: reduce-on-plateau: the rates' current scale, the best value, epochs without gain
        self.scale = 1.0
        self.best: float | None = None
        self.bad_epochs = 0
        self._pending: dict[str, Any] | None = None
        self._set: list[float] = []  # the rates it set last

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="lr_scheduler")

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        if self.schedule not in SCHEDULES:
            choices = ", ".join(SCHEDULES)
            raise SettingsError(f"schedule must be one of {choices}, got {self.schedule!r}")
        resolve_mode(self.monitor, self.mode)
        require("lr_step_size", self.lr_step_size, self.lr_step_size >= 1, "an integer >= 1")
        require("lr_gamma", self.lr_gamma, 0 < self.lr_gamma <= 1, "a factor in (0, 1]")
        require("lr_factor", self.lr_factor, 0 < self.lr_factor < 1, "a factor in (0, 1)")
        require("lr_horizon", self.lr_horizon, self.lr_horizon >= 0, "an integer >= 0")
        require("lr_patience", self.lr_patience, self.lr_patience >= 0, "an integer >= 0")
        require("warmup_steps", self.warmup_steps, self.warmup_steps >= 0, "an integer >= 0")
        require("warmup_start_factor", self.warmup_start_factor,
                0 <= self.warmup_start_factor <= 1, "a factor in [0, 1]")

    def idle_hooks(self) -> tuple[str, ...]:
        """Without warm-up or a per-step schedule, nothing happens after an optimizer step."""
        return () if self.warmup_steps or self._per_step() else ("on_params_update",)

    def _per_step(self) -> bool:
        return self.interval == "step" and self.schedule != "plateau"

    def _asked(self) -> str:
        """What this plugin was asked to do to the rates (empty when it only reports them)."""
        if self.lr_lambda is not None:
            return "lr_lambda"
        if self.schedule != "none":
            return f"schedule={self.schedule}"
        return f"warmup_steps={self.warmup_steps}" if self.warmup_steps else ""

    # -- set-up --------------------------------------------------------------------------------

    def on_train_start(self, trainer: TrainingRun) -> None:
        rates = trainer.task.learning_rates()
        if not rates:  # a task that keeps its rates to itself (or has none)
            asked = self._asked()
            if asked:
                raise UserError(
                    f"lr_scheduler: {asked} needs the task's learning rates, and it exposes "
                    "none (an Optax optimizer exposes its rate when built with "
                    "optax.inject_hyperparams, e.g. optax.inject_hyperparams(optax.adamw)"
                    "(learning_rate=1e-3))"
                )
            warnings.warn(
                "lr_scheduler: the task exposes no learning rate: lr is not reported",
                stacklevel=2,
            )
            self.task, self._pending = None, None  # a resumed schedule has nothing to act on
            return
        self.task = trainer.task
        self.horizon = self._horizon(trainer)
        if self._pending is not None:
            for key, value in self._pending.items():
                setattr(self, key, value)
            self._pending = None
        else:
            self.base_lrs, self.steps, self.t = list(rates), 0, 0
            self.scale, self.best, self.bad_epochs = 1.0, None, 0
        self._apply(always=True)

    def _horizon(self, trainer: TrainingRun) -> int:
        if self.lr_horizon:
            return self.lr_horizon
        if not self._per_step():
            return max(1, trainer.epochs)
        try:
            batches = len(trainer.train_data)  # type: ignore[arg-type]
        except TypeError:
            if self.schedule in ("cosine", "linear"):
                raise UserError(
                    f"lr_scheduler: a per-step {self.schedule} schedule needs lr_horizon= "
                    "(its length in optimizer steps): the training data has no length"
                ) from None
            return 1
        accumulate = max(1, int(getattr(trainer.task, "accumulate_grad_batches", 1)))
        return max(1, trainer.epochs * math.ceil(batches / accumulate))

    # -- the rate ------------------------------------------------------------------------------

    def factor(self) -> float:
        """The multiplier of the base rates now: the warm-up's, then the schedule's."""
        if self.steps < self.warmup_steps:
            start = self.warmup_start_factor
            return start + (1.0 - start) * self.steps / self.warmup_steps
        if self.lr_lambda is not None:
            return float(self.lr_lambda(self.t))
        if self.schedule == "step":
            return float(self.lr_gamma ** (self.t // self.lr_step_size))
        if self.schedule == "cosine":
            return (1.0 + math.cos(math.pi * self.t / self.horizon)) / 2.0
        if self.schedule == "linear":
            return max(0.0, 1.0 - self.t / self.horizon)
        return self.scale  # plateau (1.0 for none)

    def _apply(self, always: bool = False) -> None:
        """Set the rates the schedule gives now: ``always`` at the start of training (setting
        them is what makes them the plugin's: a bridge keeps them against its host's own
        scheduler), later only when they differ from those it set last (a constant schedule
        sets nothing once a run is going: on JAX a set is a transfer to the device)."""
        assert self.task is not None
        factor = self.factor()
        rates = [base * factor for base in self.base_lrs]
        if always or rates != self._set:
            self.task.set_learning_rates(rates)
            self._set = rates

    # -- stepping ------------------------------------------------------------------------------

    def on_params_update(self) -> None:
        if self.task is None:
            return
        self.steps += 1
        if self.steps <= self.warmup_steps:
            self._apply()
        elif self._per_step():
            self.t += 1
            self._apply()

    def on_train_epoch_end(self, trainer: TrainingRun) -> None:
        if self.task is None:
            return
        for index, rate in enumerate(self.task.learning_rates()):
            trainer.metrics["lr" if index == 0 else f"lr/pg{index}"] = float(rate)

    def on_fit_epoch_end(self, metrics: dict[str, float]) -> None:
        # per epoch, the schedule counts from the first epoch end after the warm-up ended
        if self.task is None or (self.warmup_steps and self.steps <= self.warmup_steps):
            return
        if self.schedule == "plateau" and self.lr_lambda is None:
            value = monitored("lr_scheduler", self.monitor, metrics)
            if value is not None and math.isfinite(value):
                self._plateau_step(value, resolve_mode(self.monitor, self.mode))
        elif self.interval == "epoch":
            self.t += 1
            self._apply()

    def _plateau_step(self, value: float, mode: str) -> None:
        best = self.best
        if mode == "min":
            better = best is None or value < best * (1.0 - PLATEAU_THRESHOLD)
        else:
            better = best is None or value > best * (1.0 + PLATEAU_THRESHOLD)
        if better:
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.lr_patience:
            reduction = max(self.base_lrs) * self.scale * (1.0 - self.lr_factor)
            if reduction > PLATEAU_EPS:
                self.scale *= self.lr_factor
                self._apply()
            self.bad_epochs = 0

    def teardown(self) -> None:
        self.task = None  # a run's task is not kept past its run

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "base_lrs": list(self.base_lrs), "steps": self.steps, "t": self.t,
            "scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = dict(state)
