"""hookline's plugins inside Keras 3 ``Model.fit`` (on the torch and JAX backends).

>>> callback = HooklineCallback(save_dir="runs/keras", early_stopping=True, patience=3)
>>> model.fit(x, y, validation_data=(x_val, y_val), epochs=30, callbacks=[callback])

:class:`HooklineCallback` is a ``keras.callbacks.Callback`` that translates Keras's events onto
:class:`~hookline.bridges.loop.HookLoop`; :class:`KerasState` is the
:class:`hookline.StateTask` over the Keras model and its optimizer, written with ``keras.ops``
only, so that it serves every Keras backend.

What Keras fires, and what hookline fires for it:

=====================================  ===============================================
Keras                                  hookline
=====================================  ===============================================
``on_train_begin``                     ``on_pretrain_routine_start``,
                                       ``on_pretrain_routine_end``, ``on_train_start``
``on_epoch_begin``                     ``on_train_epoch_start``
``on_train_batch_begin``               ``on_train_batch_start``
``on_train_batch_end``                 ``on_params_update`` (the step is done), then
                                       ``on_train_batch_end``
``on_test_begin`` (inside ``fit``)     ``on_val_start``
``on_test_batch_begin`` / ``_end``     ``on_val_batch_start`` / ``on_val_batch_end``
``on_test_end``                        ``on_val_end`` (``val/...`` metrics)
``on_epoch_end``                       ``on_train_epoch_end``, ``on_fit_epoch_end``,
                                       ``on_log(phase="epoch")``
``on_train_end``                       ``on_train_end``, ``teardown``
an exception in ``train_function`` /   ``on_exception``, ``teardown``
``test_function`` or a hookline hook
=====================================  ===============================================

Backward and the optimizer step are compiled into Keras's ``train_function``:
``on_before_backward``, ``on_after_backward``, ``on_before_optimizer_step`` and
``on_before_zero_grad`` cannot fire (:data:`hookline.bridges.coverage.UNSUPPORTED`), and a plugin
that implements one is warned once, at registration.

Limits, each a fact of Keras:

* **No output folder**: ``save_dir`` is required.
* **No exception event**: the bridge wraps the model's ``train_function`` and
  ``test_function`` for the length of ``fit``, so a failure in the model's forward, loss,
  backward or optimizer step (and in the data, under JAX) gives every plugin
  ``on_exception`` and ``teardown``.  A failure elsewhere (another Keras callback, a torch
  data pipeline) is seen by wrapping the ``fit`` call in :meth:`HooklineCallback.guard`.
* **No place for callback state in Keras's checkpoints** (``model.save`` and
  ``BackupAndRestore`` keep the model only): plugin state (early stopping's counters, ...)
  travels in hookline's own checkpoints (``checkpoint=True``), which hold the model and the
  optimizer too; ``checkpoint=True, resume=PATH`` restores all of it and starts ``fit`` at the
  checkpoint's epoch.
* ``run.loss`` at ``on_train_batch_end`` is Keras's running mean of the epoch's loss (what
  Keras hands its callbacks), not the batch's own.
* A learning rate a plugin sets is assigned to ``model.optimizer.learning_rate`` and asserted
  again before the first step of each epoch (after Keras's own ``LearningRateScheduler`` or
  ``ReduceLROnPlateau`` callbacks may have changed it).  An optimizer given a
  ``LearningRateSchedule`` cannot take a rate: :meth:`KerasState.set_learning_rates` refuses
  with one line.
* Single process: ``rank`` 0 and ``world_size`` 1 (Keras's multi-process distribution is not
  bridged).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import keras

from hookline.backends.host_random import python_numpy_random_state, set_python_numpy_random_state
from hookline.backends.host_tree import copy_tree
from hookline.backends.msgpack_payload import load_payload, save_payload
from hookline.bridges.coverage import UNSUPPORTED
from hookline.bridges.loop import HookLoop, HostRun, rename_metrics
from hookline.errors import UserError
from hookline.manager import PluginManager
from hookline.settings import SettingsError

__all__ = ["HooklineCallback", "KerasLoop", "KerasState", "keras_metric_name"]


def keras_metric_name(name: str) -> str | None:
    """hookline's name for a Keras log entry: ``val_x`` -> ``val/x``, ``learning_rate`` ->
    ``lr``, any other ``x`` -> ``train/x``."""
    if name == "learning_rate":
        return "lr"
    if name.startswith("val_"):
        return f"val/{name[4:]}"
    return f"train/{name}"


def _to_host(value: Any) -> Any:
    """A Keras variable or a backend tensor as a NumPy array on the host (``None`` for a value
    that is neither): the checkpoint payload's explicit transfer."""
    if isinstance(value, keras.Variable):
        value = value.value  # the backend tensor (NumPy would go through __array__)
    if keras.ops.is_tensor(value):
        return _numpy(value)
    return None


def _numpy(tensor: Any) -> Any:
    """``keras.ops.convert_to_numpy(tensor)``, a copy, without the deprecation warning torch
    tensors give NumPy 2 (their ``__array__`` takes no ``copy`` keyword)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return keras.ops.convert_to_numpy(tensor).copy()


class KerasState:
    """:class:`hookline.StateTask` over a Keras model and its optimizer (``model.optimizer``).

    :param model: the model; or give ``get_model``, called at each access instead.
    :param get_model: returns the model: :class:`HooklineCallback` passes its ``model``
        property, which under JAX puts the training state back on the model's variables
        before anything reads or assigns them (mid-epoch, JAX keeps that state apart from
        the variables, and an assignment made around it is lost at the next sync).

    Values leave the device only through ``keras.ops.convert_to_numpy``: :meth:`state_dict`
    returns host copies (NumPy arrays) by variable path, and checkpoints are MessagePack
    payloads (:mod:`hookline.backends.msgpack_payload`), which load without running code.
    """

    checkpoint_format = "keras-msgpack"
    #: Keras's multi-process distribution is not bridged: one process.
    rank = 0
    world_size = 1

    def __init__(
        self, model: Any = None, *, get_model: Callable[[], Any] | None = None
    ) -> None:
        if model is None and get_model is None:
            raise TypeError("KerasState needs a model or get_model")
        self._model = model
        self._get_model = get_model
        self._pinned: float | None = None

    @property
    def model(self) -> Any:
        """The Keras model (its state synced with the trainer's under JAX)."""
        model = self._get_model() if self._get_model is not None else self._model
        if model is None:
            raise RuntimeError("KerasState: there is no model yet (fit has not started)")
        return model

    def _optimizer(self) -> Any:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise RuntimeError("KerasState: the model has no optimizer (compile it first)")
        return optimizer

    # -- numbers -------------------------------------------------------------------------------

    def to_float(self, value: Any) -> float:
        """``value`` (a Python number, a backend tensor or a Keras variable) as a float."""
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, keras.Variable):
            value = value.value
        return float(value)  # a scalar tensor of any backend converts itself

    def reduce_sum(self, value: Any) -> Any:
        """``value`` itself: one process."""
        return value

    # -- the model -----------------------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        """The trainable variables' values by path (``sequential/dense/kernel``), as the
        backend's tensors, without a copy."""
        return {variable.path: variable.value for variable in self.model.trainable_variables}

    def gradients(self) -> dict[str, Any]:
        """Empty: Keras computes the gradients inside its compiled ``train_function`` and
        hands them to no callback (``on_before_optimizer_step`` cannot fire under Keras)."""
        return {}

    def gradient_norm(self) -> Any:
        """Refused: Keras hands no gradients to callbacks.

        :raises hookline.UserError: always, in one line.
        """
        raise UserError(
            "keras: the gradients are not visible to callbacks (Keras computes them inside "
            "its compiled train_function); gradient_norm is unavailable under Keras fit"
        )

    def learning_rates(self) -> list[float]:
        """The optimizer's one learning rate (a schedule's current value, if it has one)."""
        return [self.to_float(self._optimizer().learning_rate)]

    def set_learning_rates(self, rates: Sequence[float]) -> None:
        """Assign the optimizer's learning-rate variable; the next step uses it.

        :raises hookline.UserError: when the optimizer was given a ``LearningRateSchedule``
            (or a function) instead of a float: Keras computes that rate inside each step.
        """
        if len(rates) != 1:
            raise ValueError(f"{len(rates)} learning rates for 1 Keras optimizer")
        optimizer = self._optimizer()
        variable = optimizer.learning_rate
        if not isinstance(variable, keras.Variable):
            raise UserError(
                f"keras: {type(optimizer).__name__}'s learning_rate is a schedule or a "
                "function, which hookline cannot set: give the optimizer a float "
                "learning_rate to use lr_scheduler (or leave lr_scheduler off)"
            )
        variable.assign(float(rates[0]))
        self._pinned = float(rates[0])

    def restore_learning_rates(self) -> None:
        """Assign the rate a plugin set last again, in case a Keras callback changed it."""
        if self._pinned is not None:
            self._optimizer().learning_rate.assign(self._pinned)

    # -- state ---------------------------------------------------------------------------------

    def random_state(self, data: Iterable[Any]) -> dict[str, Any]:
        """Python's and NumPy's global generators (Keras shuffles arrays with NumPy's), and
        ``data``'s own state when it has a ``state_dict()``."""
        state = python_numpy_random_state()
        if callable(getattr(data, "state_dict", None)):
            state["data"] = data.state_dict()  # type: ignore[attr-defined]
        return state

    def set_random_state(self, state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
        """Put back what :meth:`random_state` returned."""
        set_python_numpy_random_state(state)
        if data is not None and "data" in state and callable(getattr(data, "load_state_dict",
                                                                     None)):
            data.load_state_dict(state["data"])  # type: ignore[attr-defined]

    def state_dict(self) -> dict[str, Any]:
        """``model``: the model's variables (``model.variables``, in order); ``optimizer``:
        the optimizer's (its step count, learning rate and slots), in order; all as NumPy
        copies.  ``model_paths`` and ``optimizer_paths`` name them, for people: loading goes
        by order, as Keras's ``set_weights`` does."""
        model = self.model
        state: dict[str, Any] = {
            "model": _host_copies(model.variables),
            "model_paths": [variable.path for variable in model.variables],
        }
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            state["optimizer"] = _host_copies(optimizer.variables)
            state["optimizer_paths"] = [variable.path for variable in optimizer.variables]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Assign what :meth:`state_dict` returned (NumPy arrays from a checkpoint too); an
        optimizer not built yet is built for the model's trainable variables first.

        :raises ValueError: when the number of variables differs, or naming the first
            variable whose shape differs.
        """
        model = self.model
        _assign(model.variables, state["model"], "model")
        optimizer = getattr(model, "optimizer", None)
        if "optimizer" in state and optimizer is not None:
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            _assign(optimizer.variables, state["optimizer"], "optimizer")

    def save_checkpoint(self, checkpoint: Mapping[str, Any]) -> bytes:
        """MessagePack with arrays as raw bytes; tensors reach the host through
        ``keras.ops.convert_to_numpy``."""
        return save_payload(checkpoint, _to_host)

    def load_checkpoint(self, data: bytes, source: str) -> dict[str, Any]:
        """Reads arrays as bytes into NumPy: nothing in the file can run code."""
        return load_payload(data, source)

    def write_checkpoint(self, checkpoint: Mapping[str, Any], file: IO[bytes]) -> None:
        """:meth:`save_checkpoint`'s bytes, written to ``file``."""
        file.write(save_payload(checkpoint, _to_host))

    def host_copy(self, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        """``checkpoint`` with every tensor as a NumPy copy (``keras.ops.convert_to_numpy``)
        and NumPy arrays and other values copied, for a background write."""
        copied: dict[str, Any] = copy_tree(dict(checkpoint), _to_host)  # NumPy: deep-copied
        return copied


def _host_copies(variables: Sequence[Any]) -> list[Any]:
    return [_numpy(variable.value) for variable in variables]


def _assign(variables: Sequence[Any], values: Sequence[Any], what: str) -> None:
    """Assign ``values`` to ``variables`` in order (Keras's ``set_weights`` rule: variable
    paths carry layer names that differ between two instances of one architecture)."""
    if len(values) != len(variables):
        raise ValueError(
            f"the {what} has {len(variables)} variables; the state holds {len(values)}"
        )
    for variable, value in zip(variables, values, strict=True):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{what} variable {variable.path!r} has shape {tuple(variable.shape)}; the "
                f"state holds {tuple(value.shape)}"
            )
    for variable, value in zip(variables, values, strict=True):  # all checked first
        variable.assign(value)


class KerasLoop(HookLoop):
    """:class:`HookLoop` for Keras ``fit``: tells its callback when the run fails, so that it
    unwraps the model's step functions."""

    host = "Keras fit"
    unsupported = UNSUPPORTED["keras"]

    def __init__(self, *args: Any, on_fail: Callable[[], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_fail = on_fail

    def fail(self, error: BaseException) -> None:
        """:meth:`HookLoop.fail`, then the callback's clean-up."""
        try:
            super().fail(error)
        finally:
            if self.on_fail is not None:
                self.on_fail()


class HooklineCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Runs hookline's plugins inside Keras ``Model.fit``.

    :param plugins: plugin instances (or modules) to register.
    :param save_dir: the run directory (required: Keras has no output folder of its own).
    :param manager: the plugin manager; by default one with the installed entry-point plugins,
        each switched by its flag, as with :class:`hookline.Model`.
    :param settings: built-in flags and plugin settings as :class:`hookline.Model` takes
        them (``csv=True``, ``early_stopping=True, patience=3``, ``lr_scheduler=True,
        schedule="cosine"``, ``checkpoint=True``), checked at once: an unknown name raises
        :class:`hookline.SettingsError` naming the closest one.

    Observers (run files, CSV, JSON lines, summary, resources, plots) are on by default;
    Keras's own progress bar stays; control plugins wait until asked for
    (:data:`hookline.bridges.loop.BRIDGE_FLAGS`).  Metrics: Keras's ``x`` is ``train/x``,
    ``val_x`` is ``val/x``.  A stop a plugin requests sets ``model.stop_training`` at the
    end of that epoch (an interruption, e.g. by a signal, at the end of the batch).

    Keras's checkpoints have no place for callback state: plugin state travels in hookline's
    own checkpoints (``checkpoint=True``; ``resume=PATH`` restores model, optimizer, epoch and
    plugin state).  See :mod:`hookline.bridges.keras` for the events and the limits.
    """

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        save_dir: str | Path | None = None,
        *,
        manager: PluginManager | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        if save_dir is None:
            raise SettingsError(
                "save_dir is required with Keras (it has no output folder of its own): "
                "HooklineCallback(save_dir='runs/keras')"
            )
        #: The state plugins reach the model through (always via this callback's ``model``).
        self.state = KerasState(get_model=lambda: self.model)
        #: The hook loop this callback drives.
        self.loop = KerasLoop(
            self.state, plugins, save_dir, manager=manager, on_fail=self._finish, **settings
        )
        self._running = False
        self._in_fit_validation = False
        self._first_batch = False
        self._batch_begin = 0
        self._wrapped: dict[str, Any] = {}
        self._host_model: Any = None

    @property
    def manager(self) -> PluginManager:
        """The plugin manager."""
        return self.loop.manager

    @property
    def run(self) -> HostRun | None:
        """The training run plugins see (``None`` before the first ``fit``)."""
        return self.loop.run

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Wrap a ``fit`` call with it so that any failure (another callback's, the data
        pipeline's) gives plugins ``on_exception`` and ``teardown``; the error goes on."""
        try:
            yield
        except BaseException as error:
            if self._running:
                self.loop.fail(error)
            raise

    # -- the step functions, wrapped so that a failure inside reaches the plugins -------------

    def _wrap(self, name: str) -> None:
        model = self._host_model
        original = getattr(model, name, None)
        if original is None or name in self._wrapped:
            return
        loop = self.loop

        def step(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            except BaseException as error:
                loop.fail(error)
                raise

        self._wrapped[name] = original
        setattr(model, name, step)

    def _unwrap(self, name: str) -> None:
        original = self._wrapped.pop(name, None)
        if original is not None and self._host_model is not None:
            setattr(self._host_model, name, original)

    def _finish(self) -> None:
        """The run is over (ended or failed): the model gets its own step functions back."""
        self._running = self._in_fit_validation = False
        for name in list(self._wrapped):
            self._unwrap(name)

    # -- Keras's events ------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """``fit`` starts: the run starts (set-up hooks; ``resume=`` restores a checkpoint)."""
        if self._running:  # the last fit ended without on_train_end or a failure we saw
            self.loop.fail(RuntimeError("the previous fit ended without on_train_end"))
        model = self.model
        self._host_model = model
        params = self.params or {}
        steps = params.get("steps")
        optimizer = getattr(model, "optimizer", None)
        global_step = 0
        if optimizer is not None and getattr(optimizer, "built", False):
            global_step = int(self.state.to_float(optimizer.iterations))
        self._wrap("train_function")
        self._running = True
        run = self.loop.start(
            epochs=int(params.get("epochs", 1)),
            train_data=range(steps) if isinstance(steps, int) else (),
            global_step=global_step,
            backend=keras.backend.backend(), keras=keras.__version__,
            steps_per_epoch=steps, optimizer=type(optimizer).__name__,
        )
        if run.start_epoch and hasattr(model, "_initial_epoch"):
            # a restored checkpoint: fit carries on at its epoch (what Keras's own
            # BackupAndRestore callback sets at this point)
            model._initial_epoch = run.start_epoch

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A training epoch begins."""
        if not self._running:
            return
        if getattr(self._host_model, "_initial_epoch", None):
            self._host_model._initial_epoch = None  # read by fit: not for the next fit
        self._first_batch = True
        self.loop.epoch_start(epoch)

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A training batch (or, with ``steps_per_execution``, a run of them) begins."""
        if not self._running:
            return
        if self._first_batch:
            self._first_batch = False
            with self.loop.guard():
                self.state.restore_learning_rates()
        self._batch_begin = batch
        self.loop.batch_start(batch)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """The batch's optimizer step is done: ``on_params_update``, then
        ``on_train_batch_end``; an interruption stops ``fit`` here."""
        run = self.loop.run
        if not self._running or run is None:
            return
        steps = max(1, batch - self._batch_begin + 1)
        self.loop.optimizer_stepped(global_step=run.global_step + steps)
        loss = None if logs is None else logs.get("loss")
        self.loop.batch_end(batch, loss=loss)
        if run.interrupted:
            self.model.stop_training = True

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """The validation inside ``fit`` begins (a separate ``evaluate`` is ignored, and so is
        the validation Keras runs after an interruption: the epoch is not complete)."""
        run = self.loop.run
        if not self._running or run is None or run.interrupted:
            return
        self._in_fit_validation = True
        self._wrap("test_function")
        self.loop.validation_start()

    def on_test_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A validation batch begins."""
        if self._in_fit_validation:
            self.loop.validation_batch_start(batch)

    def on_test_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """A validation batch is done (``outputs``: Keras's running logs)."""
        if self._in_fit_validation:
            self.loop.validation_batch_end(batch, outputs=logs)

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """The validation is done: its metrics as ``val/...``."""
        if not self._in_fit_validation:
            return
        self._in_fit_validation = False
        self._unwrap("test_function")
        self.loop.validation_end(
            rename_metrics(logs or {}, lambda name: keras_metric_name(f"val_{name}"))
        )

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """The epoch is over, validation included: the epoch-end hooks, and a stop a plugin
        requested becomes ``model.stop_training``."""
        run = self.loop.run
        if not self._running or run is None:
            return
        if run.interrupted:  # stopped mid-epoch: no epoch-end hooks for a partial epoch
            self.model.stop_training = True
            return
        if self.loop.epoch_end(rename_metrics(logs or {}, keras_metric_name)):
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """``fit`` is over: ``on_train_end`` and ``teardown``."""
        if not self._running:
            return
        self._finish()
        self.loop.end()
