"""hookline's plugins in a loop hookline does not drive: a hand-written one, or a host
trainer's (each bridge in :mod:`hookline.bridges` translates its host's events onto this).

>>> loop = HookLoop(TorchHostState(model, optimizer), save_dir="runs/mine", patience=3)
>>> with loop.fit(epochs=10) as run:
...     for epoch in run.epochs_to_run():       # stops when a plugin asks
...         loop.epoch_start(epoch)
...         for batch_idx, batch in enumerate(train):
...             loss = step(batch)               # forward, backward
...             loop.before_optimizer_step()     # gradients final; a plugin's LR re-applied
...             optimizer.step(); optimizer.zero_grad()
...             loop.optimizer_stepped()
...             loop.batch_end(batch_idx, loss=loss)
...         loop.epoch_end({"train/loss": mean_loss, "val/loss": evaluate()})

The loop owns the run (:class:`HostRun`, a :class:`hookline.TrainingRun`) that every hook
receives, builds the plugin manager as :class:`hookline.Model` does (installed entry-point
plugins, built-ins by flag, settings checked against what plugins declare), fires the catalog's
hooks in the engine's order, maps the host's metric names to hookline's, re-applies a learning
rate a plugin set when the host's own scheduler rewrote it, and guarantees that
``on_exception`` and ``teardown`` reach every plugin.  Hooks the host cannot fire are declared
(:attr:`HookLoop.unsupported`): a plugin that implements one is warned once, at registration.

By default a bridge turns the observers on (run files, CSV, JSON lines, summary, resources,
plots, the slow-plugin check) and leaves the host's console and progress alone; control plugins
(early stopping, LR schedule, checkpoints, NaN guard, time limit, signals) stay off until asked
for, by flag (``early_stopping=True``) or by a setting that is theirs alone (``patience=3``
turns early stopping on, ``schedule="cosine"`` the LR schedule).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from hookline.errors import add_note
from hookline.flags import apply_flags_given
from hookline.manager import PluginManager, default_manager
from hookline.manager.listing import is_builtin
from hookline.plugins import DEFAULT_FLAGS
from hookline.run import ParentRun, Run, StateTask, TrainingRun

#: The built-ins a bridge turns on unless told otherwise: the observers.  The host's own
#: console and progress bar stay; control plugins wait until asked for.
BRIDGE_FLAGS: dict[str, bool] = {
    **{flag: False for flag in DEFAULT_FLAGS},
    "save": True, "csv": True, "jsonl": True, "summary": True, "resources": True,
    "plots": True, "slow_plugins": True,
}

#: Host bookkeeping that is no metric: never passed on, so that it never overwrites a column.
HOST_BOOKKEEPING = frozenset({
    "epoch", "step", "global_step", "total_flos", "train_runtime", "train_samples_per_second",
    "train_steps_per_second", "eval_runtime", "eval_samples_per_second",
    "eval_steps_per_second", "batch", "size", "num_input_tokens_seen",
})


class HostRun(TrainingRun):
    """The training run of a :class:`HookLoop`: hookline's :class:`~hookline.TrainingRun`,
    its counters moved by the host's events rather than by hookline's loop.

    ``host`` names the trainer it runs in (``"Hugging Face Trainer"``, ...).
    """

    def __init__(self, task: StateTask, manager: PluginManager, host: str) -> None:
        super().__init__(task, manager)
        self.host = host

    def epochs_to_run(self) -> Iterator[int]:
        """The epochs left, from ``start_epoch`` (a restored checkpoint moves it) to
        ``epochs``; ends early once a stop was requested, agreed over every process."""
        epoch = self.start_epoch
        while epoch < self.epochs and not self.should_stop:
            yield epoch
            epoch += 1


class HostValidation(Run):
    """The validation run inside a host's training: ``validator`` in the ``on_val_*`` hooks;
    ``trainer`` is the :class:`HostRun`, ``metrics`` the ``val/...`` floats."""

    name = "val"
    trainer: ParentRun[HostRun] = ParentRun()

    def __init__(self, trainer: HostRun) -> None:
        super().__init__(trainer.task, trainer.manager)
        self.trainer = trainer
        self.batch_idx = 0

    def sync(self) -> None:
        """Take the training run's directory, arguments and ranks."""
        run = self.trainer
        assert run is not None  # the training run holds this validation
        self.save_dir, self.args, self.settings = run.save_dir, run.args, run.settings
        self.rank, self.world_size = run.rank, run.world_size


class HookLoop:
    """Fires hookline's hooks from a loop hookline does not drive.

    :param task: the :class:`hookline.StateTask` over the host's model and optimizer
        (:class:`hookline.backends.torch.host.TorchHostState` for torch); a bridge may give it
        later, before :meth:`fit`.
    :param plugins: plugin instances (or modules) to register.
    :param save_dir: the run directory; ``None``: the host's own output folder where it has
        one, else ``runs/train/expN`` (the ``save`` plugin numbers it).
    :param manager: the plugin manager; by default one with the installed entry-point plugins
        loaded, each switched by its flag as with :class:`hookline.Model`.
    :param settings: built-in flags (``csv=True``, ``early_stopping=True``) and plugin settings
        (``patience=3``), checked at once: an unknown name or a bad value raises
        :class:`hookline.SettingsError` naming it (with the closest name).
    """

    #: The host's name, as messages spell it.
    host: ClassVar[str] = "a hand-written loop"
    #: The hooks this host cannot fire, each with the reason; a plugin that implements one is
    #: warned at registration.  A hand-written loop can fire every hook.
    unsupported: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def __init__(
        self,
        task: StateTask | None = None,
        plugins: Iterable[Any] = (),
        save_dir: str | Path | None = None,
        *,
        manager: PluginManager | None = None,
        **settings: Any,
    ) -> None:
        self.manager = manager if manager is not None else default_manager()
        for plugin in plugins:
            self.manager.register(plugin)
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.values = {**BRIDGE_FLAGS, **settings}
        self.values.update(apply_flags_given(self.manager, self.values, settings))
        self.manager.configure(self.values)  # a bad setting is refused now, not mid-run
        self._warned: set[tuple[str, str]] = set()
        self.warn_unsupported()
        self._task = task
        self.run: HostRun | None = None
        self.validator: HostValidation | None = None
        self._active = False
        self._in_validation = False

    # -- the plugins -----------------------------------------------------------------------------

    def warn_unsupported(self) -> None:
        """One warning per plugin and hook that this host cannot fire (each once).  A
        built-in's prediction and export hooks are left out: a bridge covers training, and
        those serve hookline's own ``predict`` and ``export``."""
        for name, plugin in self.manager.list_name_plugin():
            if plugin is None or name is None:
                continue
            builtin = is_builtin(plugin)
            for caller in self.manager.get_hookcallers(plugin) or ():
                why = self.unsupported.get(caller.name)
                if why is None or (name, caller.name) in self._warned:
                    continue
                if builtin and caller.name.startswith(("on_predict", "on_export")):
                    continue
                self._warned.add((name, caller.name))
                kind = "built-in" if builtin else "plugin"
                warnings.warn(
                    f"hookline: {kind} {name!r} implements {caller.name}, which the "
                    f"{self.host} cannot fire ({why}); it will not be called",
                    UnsupportedHookWarning, stacklevel=3,
                )

    # -- the run -----------------------------------------------------------------------------------

    @property
    def task(self) -> StateTask:
        """The state task plugins reach the host's model through."""
        if self._task is None:
            raise RuntimeError(f"{type(self).__name__}: no task given before training started")
        return self._task

    @task.setter
    def task(self, task: StateTask) -> None:
        self._task = task

    @property
    def should_stop(self) -> bool:
        """Whether a plugin asked the run to stop (the host should stop after this epoch)."""
        return self.run is not None and self.run.should_stop

    @contextlib.contextmanager
    def fit(
        self, *, epochs: int, train_data: Iterable[Any] = (), start_epoch: int = 0,
        global_step: int = 0, **arguments: Any,
    ) -> Iterator[HostRun]:
        """Start the run, yield it, and end it: ``on_train_end`` and ``teardown`` when the body
        returns, ``on_exception`` and ``teardown`` when it raises (then the error goes on)."""
        run = self.start(
            epochs=epochs, train_data=train_data, start_epoch=start_epoch,
            global_step=global_step, **arguments,
        )
        try:
            yield run
        except BaseException as error:
            self.fail(error)
            raise
        self.end()

    def start(
        self, *, epochs: int, train_data: Iterable[Any] = (), start_epoch: int = 0,
        global_step: int = 0, plugin_states: Mapping[str, Any] | None = None,
        **arguments: Any,
    ) -> HostRun:
        """Configure the plugins and fire the set-up hooks: ``on_pretrain_routine_start``
        (the run directory is chosen), ``on_pretrain_routine_end`` (``resume=`` restores a
        checkpoint into the host's model and optimizer), ``on_train_start``.

        ``plugin_states`` (what :meth:`HostRun.plugin_states` returned, kept in the host's own
        checkpoint) are given back to the plugins just before ``on_pretrain_routine_end``, as
        hookline's own resume does.  ``arguments`` are recorded with the settings
        (``args.yaml``): the host's own configuration, as plain data."""
        run = HostRun(self.task, self.manager, self.host)
        self.run, self.validator = run, HostValidation(run)
        run.validator = self.validator
        run.epochs, run.train_data = epochs, train_data
        run.start_epoch = run.epoch = start_epoch
        run.global_step = global_step
        run.save_dir = self.save_dir
        run.rank, run.world_size = self.task.rank, self.task.world_size
        self.manager.set_rank(run.rank)
        self.warn_unsupported()  # plugins registered since construction
        self._active = True
        with self.guard():
            run.settings = self.manager.configure(self.values)
            run.args = {
                **arguments, "epochs": epochs, "host": self.host,
                "save_dir": None if run.save_dir is None else str(run.save_dir),
                **run.settings.public(),
            }
            run.call("on_pretrain_routine_start", trainer=run)
            self.validator.sync()
            if plugin_states:
                run.load_plugin_states(plugin_states)
            run.call("on_pretrain_routine_end", trainer=run)
            run.epoch = run.start_epoch  # a restored checkpoint may have moved it
            run.call("on_train_start", trainer=run)
        return run

    def _current(self) -> HostRun:
        if self.run is None or not self._active:
            raise RuntimeError(f"{type(self).__name__}: the run has not started (call fit)")
        return self.run

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Hooks fired inside end the run cleanly when they raise: ``on_exception`` and
        ``teardown`` reach every plugin, then the error goes on to the host."""
        try:
            yield
        except BaseException as error:
            self.fail(error)
            raise

    def _fire(self, hook: str, **kwargs: Any) -> None:
        """Fire ``hook`` if anybody listens (the arguments are not even built otherwise) and
        the host can fire it (a hook declared :attr:`unsupported` never fires)."""
        if hook in self.manager.dispatch and hook not in self.unsupported:
            with self.guard():
                self.manager.call(hook, **kwargs)

    # -- events, in the engine's order ---------------------------------------------------------

    def epoch_start(self, epoch: int | None = None) -> None:
        """A training epoch begins (``epoch``: 0-based; by default the next one)."""
        run = self._current()
        if epoch is not None:
            run.epoch = epoch
        run.metrics, run.batches_done, run.epoch_complete = {}, 0, False
        self._fire("on_train_epoch_start", trainer=run)

    def batch_start(self, batch_idx: int, batch: Any = None) -> None:
        """A training batch begins."""
        run = self._current()
        run.batch_idx = batch_idx
        self._fire("on_train_batch_start", trainer=run, batch=batch, batch_idx=batch_idx)

    def before_backward(self, loss: Any) -> None:
        """The loss is computed; backward comes next."""
        run = self._current()
        run.loss = loss
        self._fire("on_before_backward", trainer=run, loss=loss)

    def after_backward(self) -> None:
        """Backward is done: the gradients of this batch are accumulated."""
        self._fire("on_after_backward", trainer=self._current())

    def before_optimizer_step(self) -> None:
        """The optimizer steps next, with final gradients.  A learning rate a plugin set is
        put back first, in case the host's scheduler changed it since."""
        run = self._current()
        restore = getattr(self.task, "restore_learning_rates", None)
        if restore is not None:
            restore()
        self._fire("on_before_optimizer_step", trainer=run)

    def optimizer_stepped(self, global_step: int | None = None) -> None:
        """The optimizer stepped (``global_step``: the steps taken now, by default one more):
        ``on_params_update`` and ``on_before_zero_grad`` fire."""
        run = self._current()
        run.global_step = run.global_step + 1 if global_step is None else global_step
        self._fire("on_params_update", trainer=run)
        self._fire("on_before_zero_grad", trainer=run)

    def batch_end(self, batch_idx: int | None = None, loss: Any = None, batch: Any = None) -> None:
        """A training batch is done (its optimizer step, if it had one, too)."""
        run = self._current()
        if batch_idx is not None:
            run.batch_idx = batch_idx
        if loss is not None:
            run.loss = loss
        run.batches_done = run.batch_idx + 1
        self._fire(
            "on_train_batch_end", trainer=run, batch=batch, batch_idx=run.batch_idx,
            loss=run.loss,
        )

    def log(self, metrics: Mapping[str, Any], phase: str = "train") -> None:
        """Metrics to log (``on_log``): ``phase="train"`` for running values between epoch
        ends.  Values are floats or scalars of the framework; names as hookline spells them
        (``train/loss``, ``val/accuracy``, ``lr``)."""
        run = self._current()
        values = {name: run.task.to_float(value) for name, value in metrics.items()}
        self._fire(
            "on_log", run=run, metrics=MappingProxyType(values), step=run.global_step,
            epoch=run.epoch, phase=phase,
        )

    def validation_start(self) -> None:
        """A validation inside training begins (``on_val_start``)."""
        self._current()
        assert self.validator is not None
        self.validator.sync()
        self.validator.metrics = {}
        self._in_validation = True
        self._fire("on_val_start", validator=self.validator)

    def validation_batch_start(self, batch_idx: int, batch: Any = None) -> None:
        """A validation batch begins (``on_val_batch_start``)."""
        assert self.validator is not None
        self.validator.batch_idx = batch_idx
        self._fire("on_val_batch_start", validator=self.validator, batch=batch,
                   batch_idx=batch_idx)

    def validation_batch_end(self, batch_idx: int, outputs: Mapping[str, Any] | None = None,
                             batch: Any = None) -> None:
        """A validation batch is done (``on_val_batch_end``)."""
        assert self.validator is not None
        self.validator.batch_idx = batch_idx
        self._fire(
            "on_val_batch_end", validator=self.validator, batch=batch, batch_idx=batch_idx,
            outputs=MappingProxyType(dict(outputs or {})),
        )

    def validation_end(self, metrics: Mapping[str, Any]) -> None:
        """A validation is done with ``metrics`` (``val/...`` names, floats or scalars):
        ``on_val_end`` fires, and the metrics join the epoch's."""
        run = self._current()
        if not self._in_validation:
            self.validation_start()
        assert self.validator is not None
        self._in_validation = False
        values = {name: run.task.to_float(value) for name, value in metrics.items()}
        self.validator.metrics = values
        run.metrics.update(values)
        self._fire("on_val_end", validator=self.validator, metrics=values)

    def epoch_end(self, metrics: Mapping[str, Any] = MappingProxyType({})) -> bool:
        """The epoch is over, validation included: ``metrics`` (hookline's names) join the
        epoch's, then ``on_train_epoch_end``, ``on_fit_epoch_end`` and ``on_log(phase=
        "epoch")`` fire.  Returns whether to stop, as every process agrees."""
        run = self._current()
        run.metrics.update({name: run.task.to_float(value) for name, value in metrics.items()})
        run.epoch_complete = True
        self._fire("on_train_epoch_end", trainer=run)
        self._fire("on_fit_epoch_end", trainer=run, metrics=run.metrics)
        self._fire(
            "on_log", run=run, metrics=MappingProxyType(dict(run.metrics)),
            step=run.global_step, epoch=run.epoch, phase="epoch",
        )
        return self.agree_on_stop()

    def agree_on_stop(self) -> bool:
        """Whether any process asked to stop: every process makes the same decision (a
        collective: every process calls it at the same point)."""
        run = self._current()
        if run.world_size > 1:
            votes = run.task.to_float(run.task.reduce_sum(1 if run.should_stop else 0))
            if votes and not run.should_stop:
                run.request_stop("a stop was requested on another process")
        return run.should_stop

    def end(self) -> None:
        """Training is over: ``on_train_end``, then ``teardown``."""
        run = self._current()
        with self.guard():
            run.call("on_train_end", trainer=run)
        self._active = False
        self.manager.call_every("teardown", run=run)

    def fail(self, error: BaseException) -> None:
        """Training failed with ``error``: ``on_exception`` and ``teardown`` reach every
        plugin (once, however many places report the same failure); a plugin that fails
        there too is attached to ``error`` as a note."""
        if not self._active or self.run is None:
            return
        self._active = False
        for hook, kwargs in (
            ("on_exception", {"run": self.run, "exception": error}),
            ("teardown", {"run": self.run}),
        ):
            try:
                self.manager.call_every(hook, **kwargs)
            except Exception as hook_error:
                add_note(error, f"hookline: a {hook} hook also failed: {hook_error!r}")


class UnsupportedHookWarning(UserWarning):
    """A plugin implements a hook that the host it runs in cannot fire."""


def rename_metrics(
    metrics: Mapping[str, Any], rename: Callable[[str], str | None]
) -> dict[str, Any]:
    """``metrics`` under hookline's names: ``rename`` maps a host's name to hookline's, or to
    ``None`` for what is no metric; host bookkeeping (:data:`HOST_BOOKKEEPING`) and values
    that are not numbers or scalars are left out."""
    renamed = {}
    for name, value in metrics.items():
        if name in HOST_BOOKKEEPING or isinstance(value, (str, bool)) or value is None:
            continue
        target = rename(name)
        if target is not None and target not in HOST_BOOKKEEPING:
            renamed[target] = value
    return renamed
