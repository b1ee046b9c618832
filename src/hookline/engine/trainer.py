"""The training phase: the loop, its run state and the order in which it fires the hooks.

Hook order of :meth:`Trainer.fit`::

    hookline_add_options, hookline_configure
    on_pretrain_routine_start        (task.setup("fit") follows: device, process group, DDP)
    on_pretrain_routine_end          (resume: a checkpoint is restored here)
    on_train_start
    for each epoch:
        on_train_epoch_start
        for each batch:
            on_train_batch_start
            on_before_backward           (task.backward follows)
            on_after_backward
            every accumulate_grad_batches batches, and after the epoch's last batch:
                on_before_optimizer_step (gradients final and unscaled; task.optimizer_step
                                          follows)
                on_params_update
                on_before_zero_grad      (task.zero_grad follows)
            on_train_batch_end
            on_log(phase="train")        every log_every_n_steps optimizer steps (a task
                                          computing asynchronously: once the loss is
                                          computed, before any other hook)
        on_train_epoch_end
        on_val_start ... on_val_end      when validation data is given and the epoch is due
        on_fit_epoch_end                 (alias on_epoch_end: validation metrics are in)
        on_log(phase="epoch")
    on_train_end                     (not when a hook or the task raised)
    teardown                         (always; on_exception first when something raised)

A stop requested with :meth:`~Phase.request_stop` is honoured after the current batch: the
epoch's end hooks (validation included) still fire, then ``on_train_end``.  An interruption
(:meth:`Trainer.interrupt`, what a SIGTERM becomes) stops at the next optimizer step and
skips the unfinished epoch's end: ``on_train_end`` fires with ``interrupted`` set, so that a
checkpoint taken there resumes the epoch exactly.  In a distributed run both flags are reduced
over ranks after each batch and after the epoch's ``on_log``, and every rank decides on the
reduced values, so all stop at the same step even when a signal lands between two lines.

A log interval's record needs the interval's mean loss on the host.  On a task that computes
asynchronously (a JAX task: its steps are queued, and Python runs ahead of the device), waiting
for that value stalls the queue ten times an epoch, a tenth of a short epoch: the record is
then delivered once the value is computed (:meth:`Task.is_ready <hookline.engine.task.Task>`,
checked after each batch), a few batches later at most, and always before any other hook
fires, so that every plugin sees the records in order and before the epoch's end (a plugin
listening to a per-batch hook thus makes every record come at once, as it used to).  Across
processes the record is a collective and is delivered at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hookline.engine.metrics import Mean
from hookline.engine.phase import Phase
from hookline.engine.task import Task
from hookline.engine.validator import Validator
from hookline.errors import UserError, add_note
from hookline.manager import PluginManager
from hookline.run import TrainingRun
from hookline.settings import SettingsError


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingsError(f"setting {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


class Trainer(Phase, TrainingRun):
    """Trains a task and fires every training hook.

    Its run state is :class:`hookline.run.TrainingRun`'s, readable by plugins at any hook;
    ``validator`` is the :class:`Validator` that runs inside ``fit``.
    """

    name = "train"
    PROGRESS_KEYS = (
        *TrainingRun.PROGRESS_KEYS, "epoch_loss", "interval_loss", "epoch_rng", "rng",
    )
    validator: Validator

    def __init__(
        self,
        task: Task,
        plugins: Iterable[Any] = (),
        *,
        manager: PluginManager | None = None,
    ) -> None:
        super().__init__(task, plugins, manager=manager)
        self.log_every_n_steps = 50
        self.val_every_n_epochs = 1
        self.validator = Validator(task, manager=self.manager)
        self.validator.trainer = self
        self._resume: dict[str, Any] | None = None
        self._epoch_loss, self._interval_loss = Mean(task), Mean(task)
        self._epoch_rng: Any = None
        #: The next optimizer step at which an event filter's due state changes (-1: none).
        self._filter_step = -1
        #: Log intervals whose record waits for its loss: ``(total, count, step, epoch)``;
        #: and the task's ``is_ready`` (None: every value is, the records are not deferred).
        self._pending_logs: list[tuple[Any, int, int, int]] = []
        self._is_ready: Callable[[Any], bool] | None = None
        self._delivering = False  # an on_log that fires a hook delivers no later record inside

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
        self.interrupted = False
        self.epochs = epochs
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.log_every_n_steps = log_every_n_steps
        self.val_every_n_epochs = val_every_n_epochs
        self.train_data = train_data
        try:
            return self._guarded(lambda: self._fit(train_data, val_data))
        finally:
            self._filter_step = self.manager.filter_position(None, None)  # out of training

    def call(self, hook_name: str, /, **kwargs: Any) -> list[Any]:
        """:meth:`Run.call <hookline.run.Run.call>`, after the log records still waiting for
        their loss (so that no hook sees the run ahead of its records)."""
        if self._pending_logs:
            self._deliver_logs(wait=True)
        return self.manager.call(hook_name, **kwargs)

    def _fit(self, train_data: Iterable[Any], val_data: Iterable[Any] | None) -> dict[str, float]:
        self._pending_logs = []
        try:
            return self._fit_epochs(train_data, val_data)
        except BaseException as error:
            try:  # the records of the intervals before the failure, as a waiting run has them
                self._deliver_logs(wait=True)
            except Exception as log_error:
                add_note(error, f"hookline: delivering the last log records failed: {log_error!r}")
            finally:
                self._pending_logs = []
            raise

    def _fit_epochs(
        self, train_data: Iterable[Any], val_data: Iterable[Any] | None
    ) -> dict[str, float]:
        self.call("on_pretrain_routine_start", trainer=self)
        self.task.setup("fit")
        self._join(self.validator)
        is_ready = getattr(self.task, "is_ready", None)
        self._is_ready = is_ready if self.world_size == 1 and callable(is_ready) else None
        self.call("on_pretrain_routine_end", trainer=self)
        self.epoch = self.start_epoch  # a checkpoint restored above may have moved it
        self.call("on_train_start", trainer=self)
        stop = self._stop_agreed()[0]
        while self.epoch < self.epochs and not stop:
            if self._train_epoch(train_data):
                break  # interrupted: its checkpoint resumes this epoch where it stopped
            if val_data is not None and (self.epoch + 1) % self.val_every_n_epochs == 0:
                self.metrics.update(self.validator.evaluate(val_data))
                self.task.train_mode(True)
            self.call("on_fit_epoch_end", trainer=self, metrics=self.metrics)
            self.call(
                "on_log", run=self, metrics=MappingProxyType(dict(self.metrics)),
                step=self.global_step, epoch=self.epoch, phase="epoch",
            )
            stop = self._stop_agreed()[0]
            if stop or self.epoch + 1 >= self.epochs:
                break
            self.epoch += 1
        self.call("on_train_end", trainer=self)
        return self.metrics

    def _start_epoch(self, data: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """The epoch's batches, numbered; when resuming, the batches already done are drawn
        (in the same shuffled order) and skipped, and the random state is put back."""
        task, resume = self.task, self._resume
        self._resume = None
        data = task.shard(data, self.epoch)
        self._epoch_loss, self._interval_loss = Mean(self.task), Mean(self.task)
        self.batches_done, self.epoch_complete = 0, False
        if resume is None:
            self._epoch_rng = task.random_state(data)
            return enumerate(data)
        self._epoch_rng = resume["epoch_rng"] if resume["epoch_rng"] is not None else resume["rng"]
        task.set_random_state(self._epoch_rng, data)
        iterator = iter(data)
        skip = int(resume["batches_done"])
        for _ in range(skip):
            if next(iterator, _END) is _END:
                raise ValueError(
                    f"cannot resume at batch {skip} of epoch {self.epoch}: the training data "
                    "has fewer batches than the run that wrote the checkpoint"
                )
        if skip:
            # the data's own generators are where they were: drawn again and skipped alike
            task.set_random_state(resume["rng"], None)
        self._epoch_loss.load_state_dict(resume["epoch_loss"])
        self._interval_loss.load_state_dict(resume["interval_loss"])
        self.batches_done = skip
        return enumerate(iterator, start=skip)

    def _train_epoch(self, data: Iterable[Any]) -> bool:
        """One epoch; true when it was interrupted before its end (no end hooks ran)."""
        task = self.task
        self.metrics = {}
        self._filter_step = self.manager.filter_position(self.global_step, self.epoch)
        try:  # this process's batches (the task decides how the data is shared)
            self.epoch_batches = len(task.shard(data, self.epoch))  # type: ignore[arg-type]
        except TypeError:
            self.epoch_batches = None
        self.call("on_train_epoch_start", trainer=self)
        task.train_mode(True)
        accumulate = max(1, int(getattr(task, "accumulate_grad_batches", 1)))
        batches = self._start_epoch(data)
        epoch_loss, interval_loss = self._epoch_loss, self._interval_loss
        # per-batch hooks are called only when someone listens: their arguments are not even
        # built otherwise (``dispatch`` is live, so a plugin registered mid-epoch is heard)
        hooks = self.manager.dispatch
        pending = 0
        interrupted = False
        for batch_idx, batch in batches:
            self.batch_idx = batch_idx
            if "on_train_batch_start" in hooks:
                self.call("on_train_batch_start", trainer=self, batch=batch, batch_idx=batch_idx)
            loss = task.training_step(batch)
            self.loss = loss
            if "on_before_backward" in hooks:
                self.call("on_before_backward", trainer=self, loss=loss)
            task.backward(loss)
            if "on_after_backward" in hooks:
                self.call("on_after_backward", trainer=self)
            pending += 1
            if pending == accumulate:
                self._optimizer_step(hooks)
                pending = 0
            detached, count = task.detach(loss), task.batch_size(batch)
            epoch_loss.add(detached, count)
            interval_loss.add(detached, count)
            self.batches_done = batch_idx + 1
            if "on_train_batch_end" in hooks:
                self.call(
                    "on_train_batch_end", trainer=self, batch=batch, batch_idx=batch_idx, loss=loss
                )
            if (
                pending == 0
                and self.log_every_n_steps
                and self.global_step % self.log_every_n_steps == 0
            ):
                self._log_interval(interval_loss)
            elif self._pending_logs:
                self._deliver_logs(wait=False)
            # decide on the flags as agreed (a signal may set them at any instant: one that
            # comes after this line counts at the next batch, on every rank alike)
            if self.world_size > 1:
                stop, interrupted = self._agree_on_stop()
            else:
                stop, interrupted = self.should_stop, self.interrupted
            if stop and not (interrupted and pending):
                break  # an interruption waits for the step that applies the gradients
        else:
            self.epoch_complete = True
        if interrupted and not self.epoch_complete:
            return True
        if self.epoch_complete and self.batches_done == 0:
            raise UserError(
                f"the training data yielded no batch in epoch {self.epoch + 1}: nothing to "
                "train on (an empty dataset, or a loader that drops its only batch?)"
            )
        if pending:
            self._optimizer_step(hooks)
        if task.reduce_sum(epoch_loss.count):
            self.metrics["train/loss"] = epoch_loss.result()
        self.call("on_train_epoch_end", trainer=self)
        return False

    def _stop_agreed(self) -> tuple[bool, bool]:
        """``(stop, interrupted)`` as every process sees them (agreed over ranks in a
        distributed run)."""
        if self.world_size > 1:
            return self._agree_on_stop()
        return self.should_stop, self.interrupted

    def _agree_on_stop(self) -> tuple[bool, bool]:
        """A stop (or interruption) on any process stops every process at the same step.

        One reduction carries both: each process adds 1 for a stop and ``world_size + 1`` for
        an interruption, so the sum exceeds ``world_size`` exactly when one was interrupted.
        Returns the agreed ``(stop, interrupted)``: the loop decides on these, never on the
        flags themselves, which a signal handler may set again right after the reduction."""
        vote = (1 + self.world_size) if self.interrupted else (1 if self.should_stop else 0)
        total = int(self.task.reduce_sum(vote))
        stop, interrupted = total > 0, total > self.world_size
        if interrupted and not self.interrupted:
            self.interrupt("interrupted on another process")
        elif stop and not self.should_stop:
            self.request_stop("a stop was requested on another process")
        return stop, interrupted

    def _optimizer_step(self, hooks: Mapping[str, Any]) -> None:
        if "on_before_optimizer_step" in hooks:
            self.task.unscale_gradients()
            self.call("on_before_optimizer_step", trainer=self)
        self.task.optimizer_step()
        self.global_step += 1
        if self.global_step == self._filter_step:  # an event filter's due state changes
            self._filter_step = self.manager.filter_position(self.global_step, self.epoch)
        if "on_params_update" in hooks:
            self.call("on_params_update", trainer=self)
        if "on_before_zero_grad" in hooks:
            self.call("on_before_zero_grad", trainer=self)
        self.task.zero_grad()

    def _log_interval(self, interval_loss: Mean) -> None:
        if self._is_ready is not None and "on_log" in self.manager.dispatch:
            total, count = interval_loss.take()
            self._pending_logs.append((total, count, self.global_step, self.epoch))
            self._deliver_logs(wait=False)
            return
        # reducing is a collective: every rank takes part, listening to on_log or not
        if self.world_size > 1 or "on_log" in self.manager.dispatch:
            self._log_train(interval_loss.result(), self.global_step, self.epoch)
        interval_loss.reset()

    def _deliver_logs(self, wait: bool) -> None:
        """Fire ``on_log`` for the waiting records, oldest first: all of them when ``wait``,
        else those whose loss is computed."""
        if self._delivering:
            return
        pending, is_ready = self._pending_logs, self._is_ready
        self._delivering = True
        try:
            while pending and (wait or is_ready is None or is_ready(pending[0][0])):
                total, count, step, epoch = pending.pop(0)
                self._log_train(self.task.to_float(total) / count, step, epoch)
        finally:
            self._delivering = False

    def _log_train(self, loss: float, step: int, epoch: int) -> None:
        self.manager.call(
            "on_log", run=self, metrics=MappingProxyType({"train/loss": loss}), step=step,
            epoch=epoch, phase="train",
        )

    # -- checkpoint state: the loop's own progress besides TrainingRun's counters -----------

    def progress_state(self) -> dict[str, Any]:
        """:meth:`TrainingRun.progress_state`, with the epoch's running losses and the random
        state at the epoch's start and now, so that a resumed epoch draws the same batches
        and reports the same mean loss."""
        complete = self.epoch_complete or self.batches_done == 0
        return {
            **super().progress_state(),
            "epoch_loss": _NO_LOSSES if complete else self._epoch_loss.state_dict(),
            "interval_loss": _NO_LOSSES if complete else self._interval_loss.state_dict(),
            "epoch_rng": None if complete else self._epoch_rng,
            "rng": self.task.random_state(self.train_data),
        }

    def restore_progress(self, progress: Mapping[str, Any]) -> None:
        super().restore_progress(progress)
        self._resume = {key: progress[key] for key in self.PROGRESS_KEYS}


_END = object()
_NO_LOSSES = {"total": None, "count": 0}
