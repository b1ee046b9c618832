"""hookline's plugins inside a Hugging Face ``transformers.Trainer``.

>>> trainer = transformers.Trainer(
...     model=model, args=args, train_dataset=train, eval_dataset=val,
...     callbacks=[HooklineCallback(patience=3, checkpoint=True)],
... )
>>> trainer.train()             # results.csv, summary.json, ... in args.output_dir

:class:`HooklineCallback` is a ``TrainerCallback`` that translates the Trainer's events onto a
:class:`~hookline.bridges.loop.HookLoop`.  The plugins see a :class:`hookline.TrainingRun`
whose task is a :class:`~hookline.backends.torch.host.TorchHostState` over the Trainer's model
and optimizer.

Event mapping (Trainer event -> hookline):

=============================  ===========================================================
``on_init_end``                finds the Trainer (see below) and wraps its ``train``
``on_train_begin``             ``on_pretrain_routine_start``, ``on_pretrain_routine_end``,
                               ``on_train_start`` (plugin state restored from a checkpoint
                               the Trainer resumes from)
``on_epoch_begin``             ``on_train_epoch_start``
``on_step_begin``              ``on_train_batch_start`` (one per optimizer step)
``on_pre_optimizer_step``      ``on_before_optimizer_step`` (after clipping; a learning
                               rate a plugin set is put back first)
``on_optimizer_step``          ``on_params_update``, ``on_before_zero_grad``
``on_step_end``                ``on_train_batch_end``
``on_log``                     ``on_log(phase="train")`` for training logs (``lr``: the
                               rate the last optimizer step used)
``on_prediction_step``         ``on_val_start`` (at the first batch), ``on_val_batch_end``
``on_evaluate``                ``on_val_end``; after the epoch's end also
                               ``on_train_epoch_end``, ``on_fit_epoch_end``,
                               ``on_log(phase="epoch")``
``on_epoch_end``               the epoch's end hooks, unless the Trainer evaluates or logs
                               next (then they fire there, with those metrics)
``on_train_end``               ``on_train_end``, ``teardown``
exception out of ``train``     ``on_exception``, ``teardown``
=============================  ===========================================================

The Trainer's metric names become hookline's: ``eval_x`` -> ``val/x``, ``loss`` ->
``train/loss``, ``learning_rate`` -> ``lr``, ``train_x`` and any other ``x`` -> ``train/x``;
its bookkeeping (``epoch``, ``total_flos``, runtimes, ...) is left out.

**Exceptions.**  A ``TrainerCallback`` has no exception event and never receives the Trainer.
The Trainer fires ``on_init_end`` at the end of its ``__init__``, with every callback given to
it already registered; there the callback walks up the call stack to the ``Trainer.__init__``
frame (the frame whose ``self`` is a ``transformers.Trainer`` holding this callback) and
replaces the instance's ``train`` with a wrapper that fires ``on_exception`` and ``teardown``
when training raises (a model's forward, the data, an optimizer step, anything).  A callback
added later with ``trainer.add_callback(...)`` misses ``on_init_end``: it finds the Trainer at
``on_train_begin`` the same way and then wraps the instance's ``training_step`` and
``evaluate`` for that call (a failure inside them, the model's forward and backward included,
reaches the plugins; a failure elsewhere in that first call does not), and ``train`` for the
calls after it.  Calling ``Trainer.train(trainer)`` through the class bypasses the wrapper.

**State.**  The callback is an ``ExportableState``: every checkpoint the Trainer writes holds
the plugins' states (``HostRun.plugin_states``) under ``stateful_callbacks`` in
``trainer_state.json`` (as JSON where they are plain data, else as the task's checkpoint
payload, base64-encoded, loaded without unpickling), and ``trainer.train(
resume_from_checkpoint=...)`` gives them back before ``on_train_start``, whether or not
``restore_callback_states_from_checkpoint`` is set.  (When it is set, the Trainer rebuilds
each stateful callback from its saved arguments; this callback then stays the same instance,
with its plugins, provided it was given to the Trainer's constructor: one added with
``add_callback`` is not yet attached to the Trainer when that happens, and would be replaced
by a bare one.)

**Distributed.**  Under ``torchrun`` the rank and world size come from ``torch.distributed``;
rank-zero-only plugins write once, and a stop is agreed over every rank at the end of each
epoch (a stop requested mid-epoch takes effect at once in a single process, at the epoch's end
in several).
"""

from __future__ import annotations

import base64
import contextvars
import functools
import inspect
import json
import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import transformers
from transformers.trainer_callback import (
    ExportableState,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from transformers.training_args import TrainingArguments

from hookline.backends.torch.host import TorchHostState
from hookline.bridges.coverage import UNSUPPORTED
from hookline.bridges.loop import HookLoop, HostRun, rename_metrics
from hookline.errors import CheckpointError

__all__ = ["HFHostState", "HFLoop", "HooklineCallback", "hf_metric_name"]

#: The callback whose Trainer is inside ``train`` (so that the Trainer's rebuilding of
#: stateful callbacks keeps this instance).
_TRAINING: contextvars.ContextVar[HooklineCallback | None] = contextvars.ContextVar(
    "hookline_hf_training", default=None
)
#: How far up the stack the Trainer's frame is looked for.
_FRAMES = 12
#: The key of the plugins' states in the callback's exported state.
_STATE_KEY = "hookline_state"


def hf_metric_name(name: str) -> str | None:
    """hookline's name for one of the Trainer's metric names: ``eval_x`` -> ``val/x``,
    ``loss`` -> ``train/loss``, ``learning_rate`` -> ``lr``, ``train_x`` -> ``train/x``, a
    name with a ``/`` kept, any other ``x`` -> ``train/x``."""
    if name.startswith("eval_"):
        return "val/" + name[len("eval_"):]
    if name == "loss":
        return "train/loss"
    if name == "learning_rate":
        return "lr"
    if name.startswith("train_"):
        return "train/" + name[len("train_"):]
    if "/" in name:
        return name
    return "train/" + name


class HFHostState(TorchHostState):
    """:class:`TorchHostState` over the Trainer's model and optimizer, which also says how many
    batches each optimizer step accumulates (for per-step schedules' length)."""

    def __init__(self, model: Any, optimizer: Any = None, accumulate_grad_batches: int = 1) -> None:
        super().__init__(model, optimizer)
        #: Batches per optimizer step (``gradient_accumulation_steps``).
        self.accumulate_grad_batches = max(1, int(accumulate_grad_batches))


class HFLoop(HookLoop):
    """The :class:`HookLoop` of a Hugging Face ``Trainer``: its name in messages and the hooks
    it cannot fire (:data:`hookline.bridges.coverage.UNSUPPORTED` ``["hf"]``)."""

    host = "Hugging Face Trainer"
    unsupported = UNSUPPORTED["hf"]


class HooklineCallback(TrainerCallback, ExportableState):
    """hookline's plugins in a Hugging Face ``Trainer``: pass it in ``callbacks=[...]``.

    :param plugins: plugin instances (or modules) to register.
    :param save_dir: where the plugins write (``results.csv``, ``weights/``, ...); ``None``:
        the Trainer's ``args.output_dir``.
    :param settings: built-in flags and plugin settings as :class:`hookline.Model` takes them
        (``csv=True``, ``early_stopping=True``, ``patience=3``, ``lr_scheduler=True,
        schedule="cosine"``); an unknown name or a bad value raises
        :class:`hookline.SettingsError` here, naming it.

    By default the observers are on (run files, CSV, JSON lines, summary, resources, plots)
    and the Trainer's own console and progress are left alone; control plugins (early
    stopping, LR schedule, checkpoints, NaN guard) are off until asked for.  Installed
    entry-point plugins are on, each switched by its flag.

    A stop a plugin requests (early stopping) sets ``control.should_training_stop`` at the end
    of that epoch (after the Trainer's evaluation, so before its checkpoint and its check).
    A learning rate a plugin sets is the one every following optimizer step uses, even with the
    Trainer's own scheduler, which rewrites the rates after every step.  A Trainer "step" is a
    hookline batch: with gradient accumulation, the batch hooks fire once per optimizer step.
    ``trainer.loss`` is the last logged loss (the Trainer hands over no per-batch loss), and
    ``batch`` is ``None`` in the batch hooks.  See the module's documentation for how
    exceptions reach the plugins and how their state travels in the Trainer's checkpoints.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> HooklineCallback:
        """A new callback; but when the Trainer rebuilds stateful callbacks from a checkpoint
        (``restore_callback_states_from_checkpoint``, with no arguments, inside ``train``), the
        callback already training, so that its plugins stay."""
        live = _TRAINING.get()
        if not args and not kwargs and isinstance(live, cls):
            return live
        instance: HooklineCallback = super().__new__(cls)
        return instance

    def __init__(
        self, plugins: Iterable[Any] = (), save_dir: str | Path | None = None, **settings: Any
    ) -> None:
        if getattr(self, "loop", None) is not None and not plugins and save_dir is None and (
            not settings
        ):
            return  # the Trainer rebuilding this very callback (see __new__)
        #: The loop that fires hookline's hooks.
        self.loop = HFLoop(None, plugins, save_dir, **settings)
        self._save_dir_given = save_dir is not None
        self._trainer: weakref.ReferenceType[Any] | None = None
        self._train_metrics: dict[str, Any] = {}
        self._close_at: str | None = None
        self._batch = 0
        self._val_batch = 0
        self._last_train_log = 0
        self._steps_per_epoch: int | None = None
        self._running = False
        self._step_rates: list[float] = []

    # -- finding the Trainer -------------------------------------------------------------------

    def _find_trainer(self) -> Any:
        """The ``transformers.Trainer`` holding this callback, from the call stack (its
        ``__init__`` at ``on_init_end``, its training loop at ``on_train_begin``)."""
        frame = inspect.currentframe()
        try:
            for _ in range(_FRAMES):
                if frame is None:
                    return None
                candidate = frame.f_locals.get("self")
                if isinstance(candidate, transformers.Trainer) and any(
                    callback is self for callback in candidate.callback_handler.callbacks
                ):
                    return candidate
                frame = frame.f_back
            return None
        finally:
            del frame

    def _wrap(self, trainer: Any, name: str) -> None:
        """Replace ``trainer.<name>`` (on the instance) by a wrapper that ends hookline's run
        with ``on_exception`` and ``teardown`` when it raises."""
        original: Callable[..., Any] = getattr(trainer, name)
        callback = self

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _TRAINING.set(callback) if name == "train" else None
            try:
                return original(*args, **kwargs)
            except BaseException as error:
                if callback._running:
                    callback._running = False
                    callback.loop.fail(error)  # nothing when the run already ended
                raise
            finally:
                if token is not None:
                    _TRAINING.reset(token)

        wrapper.__hookline_wrapped__ = True  # type: ignore[attr-defined]
        setattr(trainer, name, wrapper)

    def _attach(self, trainer: Any, names: tuple[str, ...]) -> None:
        self._trainer = weakref.ref(trainer)
        for name in names:
            self._wrap(trainer, name)

    def on_init_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Find the Trainer and wrap its ``train`` (exceptions reach the plugins)."""
        trainer = self._find_trainer()
        if trainer is not None:
            self._attach(trainer, ("train",))

    # -- training --------------------------------------------------------------------------------

    @property
    def run(self) -> HostRun | None:
        """The current (or last) training run as plugins see it; ``None`` before training."""
        return self.loop.run

    def _active(self) -> bool:
        return self._running and self.loop.run is not None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Start hookline's run over the Trainer's model and optimizer."""
        attached = self._trainer() if self._trainer is not None else None
        if attached is None:  # added after the Trainer was built: no on_init_end came
            trainer = self._find_trainer()
            if trainer is not None:
                self._attach(trainer, ("training_step", "evaluate", "train"))
        if self._active():  # a train call before this one ended without on_train_end
            self._running = False
            self.loop.fail(RuntimeError("the Trainer started training again"))
        task = HFHostState(
            kwargs["model"], kwargs.get("optimizer"), args.gradient_accumulation_steps
        )
        self.loop.task = task
        if not self._save_dir_given:
            self.loop.save_dir = Path(str(args.output_dir))
        name = type(self).__name__
        saved: Any = state.stateful_callbacks  # a dict by name once the state is built
        states = None
        if state.global_step > 0:  # resumed from a checkpoint
            states = self._saved_states(saved.get(name))
        # a checkpoint written without this callback has no entry, which saving needs
        saved.setdefault(name, self.state())
        train_data = kwargs.get("train_dataloader")
        try:
            batches = len(train_data)  # type: ignore[arg-type]
            self._steps_per_epoch = max(1, math.ceil(batches / args.gradient_accumulation_steps))
        except TypeError:
            self._steps_per_epoch = None
        self._last_train_log = state.global_step
        self._close_at, self._train_metrics, self._step_rates = None, {}, []
        run = self.loop.start(
            epochs=math.ceil(state.num_train_epochs or args.num_train_epochs),
            train_data=train_data if train_data is not None else (),
            start_epoch=_whole_epochs(state), global_step=state.global_step,
            plugin_states=states, hf=_host_arguments(args, state),
        )
        self._running = True
        if run.should_stop:
            control.should_training_stop = True

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """``on_train_epoch_start``."""
        if not self._active():
            return
        if self._close_at is not None:
            self._close_epoch(control)
        epoch = _whole_epochs(state)
        done = 0
        if self._steps_per_epoch is not None:  # resumed in the middle of an epoch
            done = max(0, state.global_step - epoch * self._steps_per_epoch)
        self._batch, self._train_metrics = done, {}
        self.loop.epoch_start(epoch)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """``on_train_batch_start`` (a Trainer step: one optimizer step)."""
        if self._active():
            self.loop.batch_start(self._batch)

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """A plugin's learning rate put back, then ``on_before_optimizer_step``."""
        if self._active():
            self.loop.before_optimizer_step()
            self._step_rates = self.loop.task.learning_rates()  # the rates this step uses

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """``on_params_update`` and ``on_before_zero_grad`` (the Trainer counts the step only
        after this event: the run's ``global_step`` is one more than the Trainer's here)."""
        if self._active():
            self.loop.optimizer_stepped(state.global_step + 1)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """``on_train_batch_end``; a stop requested (in a single process) ends the epoch."""
        if not self._active():
            return
        self.loop.batch_end(self._batch)
        self._batch += 1
        run = self.loop.run
        assert run is not None
        if run.should_stop and (run.world_size == 1 or run.interrupted):
            control.should_training_stop = True

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """The epoch's end hooks now, or after the evaluation or log the Trainer makes next."""
        if not self._active():
            return
        if control.should_evaluate:
            self._close_at = "evaluate"
        elif control.should_log and state.global_step > self._last_train_log:
            self._close_at = "log"
        else:
            self._close_epoch(control)

    def _close_epoch(self, control: TrainerControl) -> None:
        self._close_at = None
        run = self.loop.run
        assert run is not None
        if run.interrupted:
            return  # an interrupted epoch has no end hooks
        restore = getattr(self.loop.task, "restore_learning_rates", None)
        if restore is not None:
            restore()  # the rate plugins set, not the one the Trainer's scheduler moved on to
        if self.loop.epoch_end(self._train_metrics):
            control.should_training_stop = True

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        logs: Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> None:
        """Training logs go on as ``on_log(phase="train")`` and into the epoch's metrics;
        evaluation logs wait for ``on_evaluate``; the end-of-training summary is left out."""
        if not self._active() or not logs:
            return
        if any(name.startswith("eval_") for name in logs) or "train_runtime" in logs:
            return
        metrics = rename_metrics(logs, hf_metric_name)
        if "learning_rate" in logs and self._step_rates:
            # the Trainer logs its scheduler's rate; the step used the one a plugin may have set
            metrics["lr"] = self._step_rates[0]
        if "loss" in logs:
            self._last_train_log = state.global_step
            run = self.loop.run
            assert run is not None
            run.loss = float(logs["loss"])
        self._train_metrics.update(metrics)
        if metrics:
            self.loop.log(metrics, phase="train")
        if self._close_at == "log":
            self._close_epoch(control)

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """``on_val_start`` at the first batch of an evaluation, ``on_val_batch_end``."""
        if not self._active():
            return
        if self._val_batch == 0:
            self.loop.validation_start()
        self.loop.validation_batch_end(self._val_batch)
        self._val_batch += 1

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        metrics: Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> None:
        """``on_val_end`` with the Trainer's metrics; the epoch's end hooks if it is over."""
        if not self._active():
            return
        self._val_batch = 0
        self.loop.validation_end(rename_metrics(metrics or {}, hf_metric_name))
        if self._close_at == "evaluate":
            self._close_epoch(control)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """``on_train_end`` and ``teardown``."""
        if not self._active():
            return
        if self._close_at is not None:
            self._close_epoch(control)
        self._running = False
        self.loop.end()

    # -- state in the Trainer's checkpoints -----------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What the Trainer stores in ``trainer_state.json``: the plugins' states (no
        constructor arguments: plugins are objects the user gives again)."""
        run = self.loop.run
        if run is None:
            return {"args": {}, "attributes": {}}
        states = run.plugin_states()
        try:
            encoded: dict[str, Any] = {"format": "json", "plugins": json.loads(json.dumps(states))}
        except (TypeError, ValueError):
            payload = run.task.save_checkpoint({"plugins": states})
            encoded = {
                "format": run.task.checkpoint_format,
                "payload": base64.b64encode(payload).decode("ascii"),
            }
        return {"args": {}, "attributes": {_STATE_KEY: encoded}}

    def _saved_states(self, saved: Any) -> Mapping[str, Any] | None:
        """The plugins' states in a checkpoint's entry for this callback (``None``: none)."""
        for entry in saved if isinstance(saved, list) else [saved]:
            if not isinstance(entry, Mapping):
                continue
            encoded = entry.get("attributes", {}).get(_STATE_KEY)
            if not isinstance(encoded, Mapping):
                continue
            if encoded.get("format") == "json":
                return dict(encoded.get("plugins", {}))
            task = self.loop.task
            if encoded.get("format") != task.checkpoint_format:
                raise CheckpointError(
                    f"trainer_state.json: hookline plugin states in format "
                    f"{encoded.get('format')!r}, which this {task.checkpoint_format} task "
                    "cannot read"
                )
            loaded = task.load_checkpoint(
                base64.b64decode(encoded["payload"]), "trainer_state.json"
            )
            return dict(loaded.get("plugins", {}))
        return None


def _whole_epochs(state: TrainerState) -> int:
    """The epochs the Trainer has finished (``state.epoch`` is a float; 1.5 is mid-epoch 2)."""
    return math.floor(state.epoch + 1e-6) if state.epoch else 0


def _host_arguments(args: TrainingArguments, state: TrainerState) -> dict[str, Any]:
    """The Trainer's configuration that a run's ``args.yaml`` records (plain data)."""
    return {
        "output_dir": str(args.output_dir),
        "learning_rate": float(args.learning_rate),
        "per_device_train_batch_size": int(args.per_device_train_batch_size),
        "gradient_accumulation_steps": int(args.gradient_accumulation_steps),
        "num_train_epochs": float(args.num_train_epochs),
        "max_steps": int(state.max_steps),
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "seed": int(args.seed),
        "resumed_at_step": int(state.global_step),
    }
