"""The training phase: the loop, its run state and the order in which it fires the hooks.

Hook order of :meth:`Trainer.fit`::

    hookline_add_options, hookline_configure
    on_pretrain_routine_start        (task.setup("fit") follows)
    on_pretrain_routine_end
    on_train_start
    for each epoch:
        on_train_epoch_start
        for each batch:
            on_train_batch_start
            on_before_backward           (task.backward follows)
            on_after_backward
            every accumulate_grad_batches batches, and after the epoch's last batch:
                optimizer_step           (task.optimizer_step follows)
                on_params_update
                on_before_zero_grad      (task.zero_grad follows)
            on_train_batch_end
            on_log(phase="train")        every log_every_n_steps optimizer steps
        on_train_epoch_end
        on_val_start ... on_val_end      when validation data is given and the epoch is due
        on_fit_epoch_end
        on_log(phase="epoch")
    on_train_end                     (not when a hook or the task raised)
    teardown                         (always; on_exception first when something raised)

A stop requested with :meth:`~Phase.request_stop` is honoured after the current batch: the
epoch's end hooks (validation included) still fire, then ``on_train_end``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hookline.backends.base import Task
from hookline.engine.metrics import Mean
from hookline.engine.phase import Phase
from hookline.engine.validator import Validator
from hookline.manager import PluginManager


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class Trainer(Phase):
    """Trains a task and fires every training hook.

    Run state, readable by plugins at any hook: ``epoch`` (0-based, the epoch running),
    ``epochs``, ``global_step`` (optimizer steps taken), ``batch_idx``, ``loss`` (the last
    batch's loss, on the device), ``metrics`` (floats, filled at epoch end), ``should_stop`` and
    ``stop_reason``, ``save_dir``, ``args``, and ``validator``.
    """

    name = "train"

    def __init__(
        self,
        task: Task,
        plugins: Iterable[Any] = (),
        *,
        manager: PluginManager | None = None,
    ) -> None:
        super().__init__(task, plugins, manager=manager)
        self.epoch = 0
        self.epochs = 0
        self.global_step = 0
        self.batch_idx = 0
        self.loss: Any = None
        self.start_epoch = 0
        self.log_every_n_steps = 50
        self.val_every_n_epochs = 1
        #: The validator that runs inside ``fit``; it shares this trainer's plugin manager.
        self.validator = Validator(task, manager=self.manager)
        self.validator.trainer = self
        self._epoch_done = False

    def fit(
        self,
        train_data: Iterable[Any],
        val_data: Iterable[Any] | None = None,
        /,
        *,
        epochs: int = 10,
        save_dir: str | Path | None = None,
        log_every_n_steps: int = 50,
        val_every_n_epochs: int = 1,
        **settings: Any,
    ) -> dict[str, float]:
        """Train for ``epochs`` epochs and return the last epoch's metrics.

        :param train_data: an iterable of batches, iterated once per epoch.
        :param val_data: an iterable of validation batches, or ``None`` for no validation.
        :param epochs: the number of epochs (the total, when resuming).
        :param save_dir: the run directory that plugins write to (the engine writes nothing).
        :param log_every_n_steps: fire ``on_log(phase="train")`` every this many optimizer
            steps (0: only at epoch ends).
        :param val_every_n_epochs: validate every this many epochs.
        :param settings: plugin settings, checked against the options plugins declare.
        """
        arguments = {
            "epochs": _positive_int("epochs", epochs, 0),
            "save_dir": None if save_dir is None else str(save_dir),
            "log_every_n_steps": _positive_int("log_every_n_steps", log_every_n_steps, 0),
            "val_every_n_epochs": _positive_int("val_every_n_epochs", val_every_n_epochs, 1),
        }
        self._configure(arguments, settings)
        self.epochs = epochs
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.log_every_n_steps = log_every_n_steps
        self.val_every_n_epochs = val_every_n_epochs
        self.epoch = self.start_epoch
        return self._guarded(lambda: self._fit(train_data, val_data))

    def _fit(self, train_data: Iterable[Any], val_data: Iterable[Any] | None) -> dict[str, float]:
        self.call("on_pretrain_routine_start", trainer=self)
        self.task.setup("fit")
        self.call("on_pretrain_routine_end", trainer=self)
        self.call("on_train_start", trainer=self)
        while self.epoch < self.epochs and not self.should_stop:
            self._epoch_done = False
            self._train_epoch(train_data)
            if val_data is not None and (self.epoch + 1) % self.val_every_n_epochs == 0:
                self.metrics.update(self.validator.evaluate(val_data))
                self.task.train_mode(True)
            self._epoch_done = True
            self.call("on_fit_epoch_end", trainer=self, metrics=self.metrics)
            self.call(
                "on_log", run=self, metrics=MappingProxyType(dict(self.metrics)),
                step=self.global_step, epoch=self.epoch, phase="epoch",
            )
            if self.should_stop or self.epoch + 1 >= self.epochs:
                break
            self.epoch += 1
        self.call("on_train_end", trainer=self)
        return self.metrics

    def _train_epoch(self, data: Iterable[Any]) -> None:
        task = self.task
        self.metrics = {}
        self.call("on_train_epoch_start", trainer=self)
        task.train_mode(True)
        accumulate = max(1, int(getattr(task, "accumulate_grad_batches", 1)))
        epoch_loss, interval_loss = Mean(), Mean()
        pending = 0
        for batch_idx, batch in enumerate(data):
            self.batch_idx = batch_idx
            self.call("on_train_batch_start", trainer=self, batch=batch, batch_idx=batch_idx)
            loss = task.training_step(batch)
            self.loss = loss
            self.call("on_before_backward", trainer=self, loss=loss)
            task.backward(loss)
            self.call("on_after_backward", trainer=self)
            pending += 1
            if pending == accumulate:
                self._optimizer_step()
                pending = 0
            detached, count = task.detach(loss), task.batch_size(batch)
            epoch_loss.add(detached, count)
            interval_loss.add(detached, count)
            self.call(
                "on_train_batch_end", trainer=self, batch=batch, batch_idx=batch_idx, loss=loss
            )
            if (
                pending == 0
                and self.log_every_n_steps
                and self.global_step % self.log_every_n_steps == 0
            ):
                self._log_interval(interval_loss)
            if self.should_stop:
                break
        if pending:
            self._optimizer_step()
        if epoch_loss.count:
            self.metrics["train/loss"] = epoch_loss.result(task.to_float)
        self.call("on_train_epoch_end", trainer=self)

    def _optimizer_step(self) -> None:
        self.call("optimizer_step", trainer=self)
        self.task.optimizer_step()
        self.global_step += 1
        self.call("on_params_update", trainer=self)
        self.call("on_before_zero_grad", trainer=self)
        self.task.zero_grad()

    def _log_interval(self, interval_loss: Mean) -> None:
        if "on_log" in self.manager.dispatch:
            metrics = {"train/loss": interval_loss.result(self.task.to_float)}
            self.call(
                "on_log", run=self, metrics=MappingProxyType(metrics), step=self.global_step,
                epoch=self.epoch, phase="train",
            )
        interval_loss.reset()

    # -- checkpoint state (files are written by plugins, never by the engine) -------------------

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to resume, as a dict; fires ``on_save_checkpoint`` so that every
        plugin can add its own state under ``checkpoint["plugins"][<its name>]``."""
        checkpoint: dict[str, Any] = {
            "task": self.task.state_dict(),
            "progress": {
                "next_epoch": self.epoch + 1 if self._epoch_done else self.epoch,
                "global_step": self.global_step,
            },
            "metrics": dict(self.metrics),
            "plugins": {},
        }
        self.call("on_save_checkpoint", trainer=self, checkpoint=checkpoint)
        return checkpoint

    def load_checkpoint_state(self, checkpoint: Mapping[str, Any]) -> None:
        """Restore what :meth:`checkpoint_state` returned; the next ``fit`` carries on from
        there.  Fires ``on_load_checkpoint`` after the task and the counters are restored."""
        try:
            task_state, progress = checkpoint["task"], checkpoint["progress"]
            next_epoch, global_step = progress["next_epoch"], progress["global_step"]
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a hookline checkpoint: missing {error}") from None
        self.task.load_state_dict(task_state)
        self.start_epoch = int(next_epoch)
        self.global_step = int(global_step)
        self.call("on_load_checkpoint", trainer=self, checkpoint=dict(checkpoint))
