"""Keras ``fit`` runs with hookline's callback, shared by the torch-backend tests (in-process,
tests/test_bridge_keras.py) and the JAX-backend job (keras_jax.py): each scenario trains a tiny
``keras.Sequential`` on random data and returns what it observed as plain data; the tests assert.

``KERAS_BACKEND`` must be set before this module is imported.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

import hookline
from hookline.bridges.keras import HooklineCallback, KerasState
from hookline.bridges.loop import UnsupportedHookWarning

EPOCHS = 3
BATCH = 16
ROWS = 64  # 4 steps per epoch


def data(seed: int = 0, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    x = generator.normal(size=(ROWS, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32")).astype("float32")
    return x, -y if flip else y


def model(optimizer: Any = None, seed: int = 0, **compile_args: Any) -> keras.Model:
    keras.utils.set_random_seed(seed)
    net = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1),
    ])
    net.compile(
        optimizer=optimizer if optimizer is not None else keras.optimizers.SGD(0.05),
        loss=compile_args.pop("loss", "mse"), metrics=["mae"], **compile_args,
    )
    return net


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


class Recorder(hookline.Callback):
    """Records the hooks it sees (names, in order) and a few values."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.exception: str | None = None
        self.params_updates = 0

    def on_train_start(self) -> None:
        self.calls.append("on_train_start")

    def on_train_epoch_start(self) -> None:
        self.calls.append("on_train_epoch_start")

    def on_val_start(self) -> None:
        self.calls.append("on_val_start")

    def on_val_batch_start(self) -> None:
        self.calls.append("on_val_batch_start")

    def on_val_end(self) -> None:
        self.calls.append("on_val_end")

    def on_params_update(self) -> None:
        self.params_updates += 1

    def on_fit_epoch_end(self) -> None:
        self.calls.append("on_fit_epoch_end")

    def on_train_end(self) -> None:
        self.calls.append("on_train_end")

    def on_exception(self, exception: BaseException) -> None:
        self.calls.append("on_exception")
        self.exception = f"{type(exception).__name__}: {exception}"

    def teardown(self) -> None:
        self.calls.append("teardown")


# -- scenarios ---------------------------------------------------------------------------------


def observers(save_dir: Path) -> dict[str, Any]:
    """Default observers plus a recorder: CSV rows against Keras's history."""
    net = model()
    x, y = data()
    xv, yv = data(seed=1)
    recorder = Recorder()
    callback = HooklineCallback([recorder], save_dir=save_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = net.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_data=(xv, yv),
                          verbose=0, callbacks=[callback])
    return {
        "history": history.history,
        "rows": read_csv(save_dir / "results.csv"),
        "files": sorted(p.name for p in save_dir.iterdir()),
        "summary": json.loads((save_dir / "summary.json").read_text()),
        "jsonl_phases": [json.loads(line).get("phase")
                         for line in (save_dir / "metrics.jsonl").read_text().splitlines()],
        "unsupported_warnings": [str(w.message) for w in caught
                                 if issubclass(w.category, UnsupportedHookWarning)],
        "calls": recorder.calls,
        "params_updates": recorder.params_updates,
        "global_step": callback.run.global_step,
        "iterations": int(keras.ops.convert_to_numpy(net.optimizer.iterations.value)),
    }


def predicted_stop(values: list[float], patience: int) -> int:
    """The number of epochs hookline's early stopping runs on ``values`` (mode min, no delta)."""
    best, wait = math.inf, 0
    for epoch, value in enumerate(values):
        if value < best:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch + 1
    return len(values)


def early_stopping(save_dir: Path) -> dict[str, Any]:
    """Validation on negated targets: its loss rises as training fits the training targets."""
    net = model(keras.optimizers.SGD(0.05))
    x, y = data()
    xv, yv = data(seed=1, flip=True)
    callback = HooklineCallback(save_dir=save_dir, early_stopping=True, patience=1)
    history = net.fit(x, y, batch_size=BATCH, epochs=4, validation_data=(xv, yv), verbose=0,
                      callbacks=[callback])
    return {
        "epochs_run": len(history.history["loss"]),
        "predicted": predicted_stop(history.history["val_loss"], patience=1),
        "rows": len(read_csv(save_dir / "results.csv")),
        "stop_reason": callback.run.stop_reason,
        "ended": json.loads((save_dir / "summary.json").read_text())["ended"],
    }


def _mean_output(y_true: Any, y_pred: Any) -> Any:
    """A loss whose gradient with respect to the last bias is exactly 1: with plain SGD the
    bias falls by the learning rate each step, so the rate used can be read off it."""
    return keras.ops.mean(y_pred)


class BiasWatch(keras.callbacks.Callback):  # type: ignore[misc]
    """The last layer's bias before and after each step: the learning rate the step used."""

    def __init__(self) -> None:
        super().__init__()
        self.used: list[float] = []
        self._before = 0.0

    def _bias(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.layers[-1].bias.value)[0])

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._before = self._bias()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.used.append(self._before - self._bias())


def lr_schedule(save_dir: Path, warmup_steps: int = 2) -> dict[str, Any]:
    """hookline's cosine schedule with warm-up, against Keras's own LearningRateScheduler
    (listed after hookline's callback, it sets 0.5 at every epoch begin)."""
    base = 0.1
    net = model(keras.optimizers.SGD(base), loss=_mean_output)
    x, y = data()
    watch = BiasWatch()
    host_scheduler = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.5)
    callback = HooklineCallback(
        save_dir=save_dir, lr_scheduler=True, schedule="cosine", warmup_steps=warmup_steps,
        warmup_start_factor=0.1,
    )
    net.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=False,
            callbacks=[callback, host_scheduler, watch])
    steps = ROWS // BATCH
    expected = []
    for step in range(EPOCHS * steps):
        epoch = step // steps
        if step < warmup_steps:
            factor = 0.1 + 0.9 * step / warmup_steps
        else:
            factor = (1 + math.cos(math.pi * epoch / EPOCHS)) / 2
        expected.append(base * factor)
    return {
        "used": watch.used, "expected": expected,
        "csv_lr": [float(row["lr"]) for row in read_csv(save_dir / "results.csv")],
    }


def schedule_refused(save_dir: Path) -> dict[str, Any]:
    """An optimizer with a Keras LearningRateSchedule cannot take hookline's rate."""
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    net = model(keras.optimizers.SGD(decay))
    x, y = data()
    recorder = Recorder()
    callback = HooklineCallback([recorder], save_dir=save_dir, lr_scheduler=True,
                                schedule="cosine")
    try:
        net.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callback])
    except hookline.UserError as error:
        return {"error": str(error), "calls": recorder.calls}
    return {"error": None, "calls": recorder.calls}


class Exploding(keras.layers.Layer):  # type: ignore[misc]
    """Raises from its forward once armed (run eagerly: the forward runs at every step)."""

    armed = False

    def call(self, inputs: Any) -> Any:
        if self.armed:
            raise FloatingPointError("forward blew up")
        return inputs


def host_exception(save_dir: Path) -> dict[str, Any]:
    """The model's forward raises in epoch 2: plugins get on_exception and teardown."""
    keras.utils.set_random_seed(0)
    exploding = Exploding()
    net = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(4), exploding, keras.layers.Dense(1),
    ])
    net.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", run_eagerly=True)
    x, y = data()
    recorder = Recorder()
    callback = HooklineCallback([recorder], save_dir=save_dir)
    arm = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: setattr(exploding, "armed", epoch == 1))
    error = None
    try:
        net.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[callback, arm])
    except FloatingPointError as raised:
        error = str(raised)
    summary = json.loads((save_dir / "summary.json").read_text())
    step_function_restored = getattr(net.train_function, "__name__", "") != "step"
    return {
        "error": error, "calls": recorder.calls, "exception": recorder.exception,
        "ended": summary["ended"], "rows": len(read_csv(save_dir / "results.csv")),
        "restored": step_function_restored,
    }


class Broken(hookline.Callback):
    """An observer that fails at the first epoch end."""

    error_policy = "disable"

    def on_fit_epoch_end(self) -> None:
        raise RuntimeError("broken observer")


def failing_observer(save_dir: Path) -> dict[str, Any]:
    net = model()
    x, y = data()
    callback = HooklineCallback([Broken()], save_dir=save_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = net.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[callback])
    return {
        "epochs_run": len(history.history["loss"]),
        "rows": len(read_csv(save_dir / "results.csv")),
        "disabled": [str(w.message) for w in caught
                     if issubclass(w.category, hookline.PluginDisabledWarning)],
        "still_registered": any(isinstance(plugin, Broken)
                                for plugin in callback.manager.get_plugins()),
    }


def checkpoint(save_dir: Path) -> dict[str, Any]:
    """checkpoint=True writes hookline files holding Keras's model and optimizer; a fresh model
    loads them (hookline.load_checkpoint) and predicts the same; resume= carries on."""
    net = model(keras.optimizers.Adam(0.01))
    x, y = data()
    xv, yv = data(seed=1, flip=True)
    first = HooklineCallback(save_dir=save_dir, checkpoint=True, early_stopping=True,
                             patience=3)
    net.fit(x, y, batch_size=BATCH, epochs=2, validation_data=(xv, yv), verbose=0,
            callbacks=[first])
    stopper = first.manager.get_plugin("early_stopping")
    fresh = model(keras.optimizers.Adam(0.01), seed=5)
    fresh.optimizer.build(fresh.trainable_variables)
    state = KerasState(fresh)
    loaded = hookline.load_checkpoint(save_dir / "weights" / "last.pt", state)
    state.load_state_dict(loaded["task"])
    same_predictions = bool(np.allclose(fresh.predict(x, verbose=0), net.predict(x, verbose=0),
                                        atol=0, rtol=0))
    same_slots = all(
        np.array_equal(keras.ops.convert_to_numpy(a.value), keras.ops.convert_to_numpy(b.value))
        for a, b in zip(fresh.optimizer.variables, net.optimizer.variables, strict=True)
    )
    # resume: a new model and callback carry on from last.pt at epoch 3 with the plugin state
    resumed_model = model(keras.optimizers.Adam(0.01), seed=7)
    second = HooklineCallback(save_dir=save_dir / "resumed", checkpoint=True,
                              early_stopping=True, patience=3,
                              resume=str(save_dir / "weights" / "last.pt"))
    seen_epochs: list[int] = []
    history = resumed_model.fit(
        x, y, batch_size=BATCH, epochs=4, validation_data=(xv, yv), verbose=0,
        callbacks=[second, keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: seen_epochs.append(epoch))],
    )
    resumed_stopper = second.manager.get_plugin("early_stopping")
    return {
        "files": sorted(p.name for p in (save_dir / "weights").iterdir()),
        "progress": loaded["progress"], "plugin_states": sorted(loaded["plugins"]),
        "format": type(state).checkpoint_format,
        "same_predictions": same_predictions, "same_slots": same_slots,
        "first_best": [stopper.best, stopper.best_epoch, stopper.wait],
        "loaded_best": [loaded["plugins"]["early_stopping"]["best"],
                        loaded["plugins"]["early_stopping"]["best_epoch"],
                        loaded["plugins"]["early_stopping"]["wait"]],
        "resumed_epochs": seen_epochs, "resumed_history": len(history.history["loss"]),
        "resumed_best_epoch": resumed_stopper.best_epoch,
        "resumed_wait": resumed_stopper.wait,
        "resumed_rows": [row["epoch"] for row in read_csv(save_dir / "resumed" / "results.csv")],
    }


SCENARIOS = {
    "observers": observers, "early_stopping": early_stopping, "lr_schedule": lr_schedule,
    "schedule_refused": schedule_refused, "host_exception": host_exception,
    "failing_observer": failing_observer, "checkpoint": checkpoint,
}
