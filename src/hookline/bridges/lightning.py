"""hookline's plugins inside a Lightning ``Trainer``: :class:`HooklineCallback`.

>>> from hookline.bridges.lightning import HooklineCallback
>>> trainer = lightning.pytorch.Trainer(
...     max_epochs=20, callbacks=[HooklineCallback(early_stopping=True, patience=3)])
>>> trainer.fit(module, train_loader, val_loader)   # results.csv, summary.json, ... in log_dir

The callback translates Lightning's events onto :class:`~hookline.bridges.loop.HookLoop`:

=====================================  ===============================================
Lightning                              hookline
=====================================  ===============================================
``setup`` (fit)                        the task and the run directory are chosen
``on_train_start``                     ``on_pretrain_routine_start``,
                                       ``on_pretrain_routine_end`` (plugin states from a
                                       Lightning checkpoint restored), ``on_train_start``
``on_train_epoch_start``               ``on_train_epoch_start``
``on_train_batch_start``               ``on_train_batch_start``
``on_before_backward``                 ``on_before_backward``
``on_after_backward``                  ``on_after_backward``
``on_before_optimizer_step``           ``on_before_optimizer_step`` (a plugin's rate first
                                       put back over the host scheduler's)
``on_train_batch_end``                 ``on_params_update`` and ``on_before_zero_grad``
                                       (when the optimizer stepped), ``on_train_batch_end``,
                                       ``on_log(phase="train")`` every
                                       ``log_every_n_steps`` optimizer steps
``on_validation_start``                ``on_val_start`` (not for the sanity check)
``on_validation_batch_start``/``end``  ``on_val_batch_start``/``on_val_batch_end``
``on_validation_end``                  ``on_val_end`` with the ``val/...`` metrics
``on_train_epoch_end`` (after the      ``on_train_epoch_end``, ``on_fit_epoch_end``,
LightningModule's own)                 ``on_log(phase="epoch")``; a stop sets
                                       ``trainer.should_stop``
``on_train_end``                       ``on_train_end``, ``teardown``
``on_exception``                       ``on_exception``, ``teardown``
``state_dict``/``load_state_dict``     every stateful plugin's state, in Lightning's
                                       own checkpoints
=====================================  ===============================================

The epoch ends for hookline once Lightning's epoch-end metrics are complete: after the
LightningModule's own ``on_train_epoch_end`` (whose ``self.log`` calls Lightning makes visible
only then), at the point where Lightning runs its own ``EarlyStopping``, and before its
``ModelCheckpoint`` callbacks save, so that a checkpoint saved at the end of an epoch holds the
plugins' reaction to it.  A stop a plugin asks for (early stopping, ...), agreed by every
process, sets ``trainer.should_stop``: Lightning ends after that same epoch (unless its
``min_epochs``/``min_steps`` are not reached yet).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping

from hookline.backends.torch.host import TorchHostState
from hookline.bridges.coverage import UNSUPPORTED
from hookline.bridges.loop import HookLoop, rename_metrics
from hookline.settings import SettingsError

__all__ = ["HooklineCallback", "LightningHostState", "LightningLoop", "metric_name"]

_VAL_PREFIXES = ("val_", "val/", "valid_", "valid/", "validation_", "validation/")
_TRAIN_PREFIXES = ("train_", "train/")


def metric_name(name: str) -> str | None:
    """hookline's name for a metric Lightning reports (``trainer.callback_metrics``), or
    ``None`` for a per-step value (``*_step``), which is no epoch metric.

    ``val_x``, ``val/x`` (and ``valid_``, ``validation_``) become ``val/x``; ``train_x``,
    ``train/x`` and any other name ``train/x``; the ``_epoch`` suffix Lightning adds when a
    value is logged both per step and per epoch is dropped; ``lr`` and names already under
    another ``prefix/`` stay as they are."""
    if name.endswith("_step"):
        return None
    if name.endswith("_epoch"):
        name = name[: -len("_epoch")]
    for prefix in _VAL_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return "val/" + name[len(prefix):]
    for prefix in _TRAIN_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return "train/" + name[len(prefix):]
    if name == "lr" or name.startswith("lr/") or "/" in name:
        return name
    return "train/" + name


def _metrics(values: Mapping[str, Any], validation: bool) -> dict[str, Any]:
    """``values`` (Lightning's callback metrics) under hookline's names: only the ``val/``
    ones when ``validation``, else only the others.  An ``x_epoch`` value wins over ``x``."""
    ordered = sorted(values, key=lambda name: name.endswith("_epoch"))
    renamed = rename_metrics({name: values[name] for name in ordered}, metric_name)
    return {
        name: value for name, value in renamed.items()
        if name.startswith("val/") == validation
    }


class LightningHostState(TorchHostState):
    """:class:`~hookline.backends.torch.host.TorchHostState` over a LightningModule and the
    Trainer's first optimizer, with the Trainer's ``accumulate_grad_batches`` (so that a
    per-step schedule counts optimizer steps, not batches)."""

    #: Batches per optimizer step, as the Trainer accumulates them.
    accumulate_grad_batches: int = 1


class LightningLoop(HookLoop):
    """:class:`~hookline.bridges.loop.HookLoop` as a Lightning ``Trainer`` drives it: the
    hooks Lightning cannot fire are declared (``hookline.bridges.coverage``)."""

    host: ClassVar[str] = "Lightning Trainer"
    unsupported: ClassVar[Mapping[str, str]] = UNSUPPORTED["lightning"]


class _EpochEnd(EarlyStopping):
    """Where hookline's epoch ends: Lightning calls ``on_train_epoch_end`` of its early
    stopping and checkpoint callbacks only after the LightningModule's own, so that the metrics
    logged there are complete.  This marker takes that place (placed before any checkpoint
    callback) and does none of ``EarlyStopping``'s work: it only hands the moment on."""

    def __init__(self, owner: HooklineCallback) -> None:
        super().__init__(monitor="hookline")
        self.owner = owner

    @property
    def state_key(self) -> str:
        """Unique, and distinct from any real ``EarlyStopping``'s."""
        return "HooklineEpochEnd"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Nothing to set up (``EarlyStopping`` would check its monitor)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Nothing (``EarlyStopping`` would check its monitor here)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The epoch's metrics are complete: hookline's epoch ends."""
        self.owner.epoch_end(trainer)

    def state_dict(self) -> dict[str, Any]:
        """No state of its own (the plugins' travels with :class:`HooklineCallback`)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """No state of its own."""


class HooklineCallback(pl.Callback):
    """hookline's plugins inside a Lightning ``Trainer``: a ``lightning.pytorch.Callback``.

    :param plugins: plugin instances (or modules) to register, as :class:`hookline.Model`
        takes them.
    :param save_dir: the run directory hookline's plugins write to (``results.csv``,
        ``summary.json``, ``weights/``, ...); by default the Trainer's ``log_dir`` (its logger's
        version folder, or ``default_root_dir`` without a logger).
    :param settings: built-in flags (``csv=True``, ``early_stopping=True``) and plugin settings
        (``patience=3``), checked at once: an unknown name or a bad value raises
        :class:`hookline.SettingsError` naming it.  Observers (run files, CSV, JSON lines,
        summary, resources, plots) are on; Lightning's progress bar and console are left
        alone; control plugins (early stopping, LR schedule, checkpoints, NaN guard) are off
        until asked for.  Installed entry-point plugins are on, each with its flag.

    Plugins see :class:`~hookline.bridges.loop.HostRun` as ``trainer``, whose task is a
    :class:`~hookline.backends.torch.host.TorchHostState` over the LightningModule and
    ``trainer.optimizers[0]``: with several optimizers (manual optimization), plugins read
    and set the rates of the first one only.  Metric names map to hookline's
    (:func:`metric_name`): ``val_loss`` -> ``val/loss``, ``train_loss_epoch`` ->
    ``train/loss``, ``acc`` -> ``train/acc``; when the LightningModule logs no training loss,
    ``train/loss`` is the epoch's mean of the losses ``training_step`` returned.

    A learning rate a plugin sets (``lr_scheduler=True, schedule="cosine"``) is the one every
    optimizer step uses, even with a Lightning LR scheduler configured: it is put back before
    each step.  Each stateful plugin's state (early-stopping counters, the LR schedule's
    position, ...) travels in Lightning's own checkpoints (:meth:`state_dict`), so that
    ``trainer.fit(..., ckpt_path=...)`` restores it; hookline's own ``resume=`` is refused
    here for that reason.  Under Lightning's DDP every process runs the plugins; rank-zero
    plugins write once, and a stop is agreed by every process.

    hookline's epoch ends where Lightning's own ``EarlyStopping`` and checkpoint callbacks see
    it: after the LightningModule's ``on_train_epoch_end``, whose logs are then complete.  Lightning
    gives that place to those two kinds only, so during ``fit`` the Trainer's callbacks hold a
    marker (a private ``EarlyStopping`` subclass that does nothing else, placed before any
    checkpoint callback; ``trainer.early_stopping_callback`` returns it when no early stopping
    of your own is configured).

    Only ``trainer.fit`` is covered: ``validate``, ``test`` and ``predict`` run without
    hookline's hooks.  ``on_exception`` and ``teardown`` reach every plugin when ``fit`` fails
    after training started (Lightning's ``on_exception``); a failure before (in ``setup`` or
    the sanity check) comes before any plugin started, so no hook fires for it.
    """

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        save_dir: str | Path | None = None,
        **settings: Any,
    ) -> None:
        if settings.get("resume"):
            raise SettingsError(
                "resume: inside Lightning, resume with trainer.fit(..., ckpt_path=...): its "
                "checkpoints carry the plugins' state"
            )
        self.loop = LightningLoop(None, plugins, save_dir, **settings)
        self._save_dir = None if save_dir is None else Path(save_dir)
        self._task: LightningHostState | None = None
        self._marker = _EpochEnd(self)
        self._pending: dict[str, Any] | None = None
        self._running = False
        self._loss_sum: Any = 0.0
        self._loss_count = 0
        self._interval_sum: Any = 0.0
        self._interval_count = 0

    # -- set-up ----------------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """For ``fit``: the task over ``pl_module``, the run directory, and the epoch-end
        marker placed where Lightning's monitoring callbacks run."""
        if stage != "fit":
            return
        self._task = LightningHostState(pl_module)
        # TorchHostState's rank and world_size are read-only properties
        self.loop.task = self._task
        self.loop.save_dir = (
            self._save_dir if self._save_dir is not None else Path(trainer.log_dir or ".")
        )
        callbacks = _callbacks(trainer)
        if self._marker not in callbacks:
            index = next(
                (i for i, cb in enumerate(callbacks) if isinstance(cb, Checkpoint)),
                len(callbacks),
            )
            callbacks.insert(index, self._marker)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """hookline's run starts, where Lightning's (restored) counters stand."""
        if self._task is None:
            return
        self._task.optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self._task.accumulate_grad_batches = int(trainer.accumulate_grad_batches)
        states, self._pending = self._pending, None
        epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        self.loop.start(
            epochs=epochs if epochs >= 0 else trainer.current_epoch + 1,
            train_data=_train_data(trainer), start_epoch=trainer.current_epoch,
            global_step=trainer.global_step, plugin_states=states,
            max_epochs=trainer.max_epochs, max_steps=trainer.max_steps,
            accumulate_grad_batches=trainer.accumulate_grad_batches,
            log_every_n_steps=_log_every_n_steps(trainer), world_size=trainer.world_size,
        )
        self._running = True

    # -- training ----------------------------------------------------------------------------

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``on_train_epoch_start``."""
        if self._running:
            self._loss_sum, self._loss_count = 0.0, 0
            self.loop.epoch_start(trainer.current_epoch)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """``on_train_batch_start``."""
        if self._running:
            self.loop.batch_start(batch_idx, batch)

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Any
    ) -> None:
        """``on_before_backward``."""
        if self._running:
            self.loop.before_backward(loss)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``on_after_backward``."""
        if self._running:
            self.loop.after_backward()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """``on_before_optimizer_step``, the gradients final; a plugin's learning rate is put
        back first, over what Lightning's scheduler made of it."""
        if self._running:
            self.loop.before_optimizer_step()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        """``on_params_update``/``on_before_zero_grad`` if the optimizer stepped, then
        ``on_train_batch_end``, and ``on_log(phase="train")`` at Lightning's log interval."""
        if not self._running:
            return
        run = self.loop.run
        assert run is not None
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None and not hasattr(loss, "detach"):
            loss = None
        if loss is not None:
            loss = loss.detach()
            self._loss_sum, self._loss_count = self._loss_sum + loss, self._loss_count + 1
            self._interval_sum = self._interval_sum + loss
            self._interval_count += 1
        assert self._task is not None
        self._task.restore_learning_rates()  # over what Lightning's scheduler just made of it
        stepped = trainer.global_step > run.global_step
        if stepped:
            self.loop.optimizer_stepped(trainer.global_step)
        self.loop.batch_end(batch_idx, loss=loss, batch=batch)
        every = max(1, _log_every_n_steps(trainer))
        if stepped and trainer.global_step % every == 0:
            self._log_interval()
        if run.interrupted and run.world_size == 1:
            trainer.should_stop = True  # a signal: Lightning ends the epoch here

    def _log_interval(self) -> None:
        """The mean training loss since the last interval (over every process)."""
        run = self.loop.run
        assert run is not None
        task = run.task
        if self._interval_count and (
            run.world_size > 1 or "on_log" in self.loop.manager.dispatch
        ):
            total = task.to_float(task.reduce_sum(self._interval_sum))
            count = task.to_float(task.reduce_sum(self._interval_count))
            self.loop.log({"train/loss": total / count}, phase="train")
        self._interval_sum, self._interval_count = 0.0, 0

    # -- validation ----------------------------------------------------------------------------

    def _validating(self, trainer: pl.Trainer) -> bool:
        return self._running and not trainer.sanity_checking

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``on_val_start`` (not for Lightning's sanity check)."""
        if self._validating(trainer):
            self.loop.validation_start()

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """``on_val_batch_start``."""
        if self._validating(trainer):
            self.loop.validation_batch_start(batch_idx, batch)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        """``on_val_batch_end``: ``outputs`` as ``validation_step`` returned them (a tensor
        becomes ``{"loss": tensor}``)."""
        if self._validating(trainer):
            if outputs is None:
                outputs = {}
            elif not isinstance(outputs, Mapping):
                outputs = {"loss": outputs}
            self.loop.validation_batch_end(batch_idx, outputs=outputs, batch=batch)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``on_val_end`` with this validation's ``val/...`` metrics."""
        if self._validating(trainer):
            self.loop.validation_end(_metrics(trainer.callback_metrics, validation=True))

    def epoch_end(self, trainer: pl.Trainer) -> None:
        """The epoch is over, validation included, and Lightning's metrics are complete:
        hookline's epoch ends; a stop the plugins agreed on stops the Trainer after it."""
        if not self._running:
            return
        run = self.loop.run
        assert run is not None
        assert self._task is not None
        self._task.restore_learning_rates()  # plugins read the rates that are in force
        metrics = _metrics(trainer.callback_metrics, validation=False)
        if "train/loss" not in metrics and run.world_size > 1:  # a collective: every rank
            total = run.task.to_float(run.task.reduce_sum(self._loss_sum))
            count = run.task.to_float(run.task.reduce_sum(self._loss_count))
            if count:
                metrics["train/loss"] = total / count
        elif "train/loss" not in metrics and self._loss_count:
            metrics["train/loss"] = run.task.to_float(self._loss_sum) / self._loss_count
        if self.loop.epoch_end(metrics):
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``on_train_end``, then ``teardown``."""
        if self._running:
            self._running = False
            self.loop.end()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """``on_exception``, then ``teardown``: whatever failed (the model's forward, a
        plugin, Lightning itself, a ``KeyboardInterrupt``)."""
        if self._running:
            self._running = False
            self.loop.fail(exception)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The epoch-end marker leaves the Trainer's callbacks; a run Lightning left without
        ``on_train_end`` or ``on_exception`` ends here."""
        if self._running:
            self._running = False
            self.loop.end()
        if stage == "fit" and self._marker in _callbacks(trainer):
            _callbacks(trainer).remove(self._marker)

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Every stateful plugin's state (by state key), for Lightning's checkpoints."""
        run = self.loop.run
        if run is not None:
            return {"plugins": run.plugin_states()}
        return {} if self._pending is None else {"plugins": self._pending}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the plugins' states of a Lightning checkpoint for the run about to start
        (given back at ``on_pretrain_routine_end``, as hookline's own resume does)."""
        self._pending = dict(state_dict.get("plugins", {}))


def _callbacks(trainer: pl.Trainer) -> list[pl.Callback]:
    """The Trainer's callbacks, as it runs them (set up by Lightning, not annotated)."""
    callbacks: list[pl.Callback] = trainer.callbacks  # type: ignore[attr-defined]
    return callbacks


def _log_every_n_steps(trainer: pl.Trainer) -> int:
    """Lightning's logging interval, in optimizer steps (set up by Lightning, not annotated)."""
    return int(trainer.log_every_n_steps)  # type: ignore[attr-defined]


def _train_data(trainer: pl.Trainer) -> Iterable[Any]:
    """The training data as long as Lightning will take it per epoch (``limit_train_batches``
    applied): what a per-step schedule counts its length in."""
    loader: Iterable[Any] = trainer.train_dataloader or ()
    batches = trainer.num_training_batches
    if not isinstance(batches, int) and not math.isfinite(batches):
        return loader
    try:
        if len(loader) == batches:  # type: ignore[arg-type]
            return loader
    except TypeError:
        pass
    return range(int(batches))
