"""hookline's plugins inside Keras 3 ``fit``: the torch backend in this process, the JAX backend in
a subprocess job (tests/bridge_jobs/keras_jax.py).  Both run the same scenarios
(tests/bridge_jobs/keras_scenarios.py: a tiny ``keras.Sequential`` on random data) and are held
to the same assertions here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

if "keras" not in sys.modules:  # the backend is chosen at import (no TensorFlow here)
    os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("keras was imported with another backend before this module",
                allow_module_level=True)

import hookline  # noqa: E402
from hookline.bridges.keras import HooklineCallback, KerasState, keras_metric_name  # noqa: E402
from hookline.bridges.loop import UnsupportedHookWarning  # noqa: E402

JOBS = Path(__file__).resolve().parent / "bridge_jobs"
sys.path.insert(0, str(JOBS))
import keras_scenarios as scenarios  # noqa: E402

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

#: Keras's torch backend converts tensors with np.array(tensor), which NumPy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# -- the checks, shared by both backends -------------------------------------------------------


def check_observers(result: dict[str, Any], timer: bool) -> None:
    history, rows = result["history"], result["rows"]
    assert len(rows) == scenarios.EPOCHS
    for epoch, row in enumerate(rows):
        assert int(row["epoch"]) == epoch + 1
        # the CSV holds exactly the numbers Keras reported (its own history)
        assert float(row["val/loss"]) == pytest.approx(history["val_loss"][epoch], rel=1e-12)
        assert float(row["val/mae"]) == pytest.approx(history["val_mae"][epoch], rel=1e-12)
        assert float(row["train/loss"]) == pytest.approx(history["loss"][epoch], rel=1e-12)
        assert float(row["train/mae"]) == pytest.approx(history["mae"][epoch], rel=1e-12)
        assert int(row["step"]) == (epoch + 1) * scenarios.ROWS // scenarios.BATCH
        if timer:
            assert float(row["time/epoch"]) > 0
    assert "loss" not in rows[0]
    assert "val_loss" not in rows[0]
    assert {"results.csv", "metrics.jsonl", "summary.json", "args.yaml"} <= set(result["files"])
    assert result["summary"]["ended"] == "finished"
    assert result["summary"]["epochs"] == scenarios.EPOCHS
    assert result["jsonl_phases"].count("epoch") == scenarios.EPOCHS
    assert result["unsupported_warnings"] == []  # the default observers fire no such warning
    calls = result["calls"]
    assert calls[0] == "on_train_start"
    assert calls[-2:] == ["on_train_end", "teardown"]
    assert calls.count("on_train_epoch_start") == scenarios.EPOCHS
    assert calls.count("on_val_start") == calls.count("on_val_end") == scenarios.EPOCHS
    assert calls.count("on_val_batch_start") == scenarios.EPOCHS * 4
    assert calls.index("on_val_end") < calls.index("on_fit_epoch_end")
    steps = scenarios.EPOCHS * scenarios.ROWS // scenarios.BATCH
    assert result["params_updates"] == result["global_step"] == result["iterations"] == steps


def check_early_stopping(result: dict[str, Any]) -> None:
    assert result["predicted"] < 4, "the scenario must stop early to test anything"
    assert result["epochs_run"] == result["predicted"] == result["rows"]
    assert result["stop_reason"].startswith("early stopping: val/loss has not improved")
    assert result["ended"].startswith("stopped early")


def check_lr_schedule(result: dict[str, Any]) -> None:
    used, expected = result["used"], result["expected"]
    assert len(used) == len(expected) == scenarios.EPOCHS * 4
    assert used == pytest.approx(expected, abs=2e-6), (used, expected)
    # the rate of each epoch, as the lr column reports it
    assert result["csv_lr"] == pytest.approx(
        [0.1 * (1 + math.cos(math.pi * e / scenarios.EPOCHS)) / 2
         for e in range(scenarios.EPOCHS)], abs=1e-7)


def check_schedule_refused(result: dict[str, Any]) -> None:
    assert result["error"] is not None
    assert "\n" not in result["error"]
    assert "learning_rate is a schedule" in result["error"]
    assert "float" in result["error"]
    assert result["calls"][-2:] == ["on_exception", "teardown"]


def check_host_exception(result: dict[str, Any]) -> None:
    assert "forward blew up" in result["error"]  # Keras adds the layer's name to the message
    assert result["calls"][-2:] == ["on_exception", "teardown"]
    assert "on_train_end" not in result["calls"]
    assert result["exception"].startswith("FloatingPointError: ")
    assert "forward blew up" in result["exception"]
    assert result["ended"].startswith("failed: FloatingPointError: ")
    assert result["rows"] == 1  # epoch 1 finished; the CSV file was closed with its row
    assert result["restored"]


def check_failing_observer(result: dict[str, Any]) -> None:
    assert result["epochs_run"] == result["rows"] == scenarios.EPOCHS
    assert len(result["disabled"]) == 1
    assert "broken observer" in result["disabled"][0]
    assert not result["still_registered"]


def check_checkpoint(result: dict[str, Any]) -> None:
    assert {"last.pt", "best.pt"} <= set(result["files"])
    assert result["format"] == "keras-msgpack"
    assert result["progress"] == {"epoch": 2, "batches_done": 0, "global_step": 8}
    assert {"checkpoint", "early_stopping"} <= set(result["plugin_states"])
    assert result["same_predictions"]
    assert result["same_slots"]
    assert result["loaded_best"] == result["first_best"]
    # resume=: Keras's fit carries on at the checkpoint's epoch, with the plugins' state
    assert result["resumed_epochs"] == [2, 3]
    assert result["resumed_history"] == 2
    assert result["resumed_rows"] == ["3", "4"]
    assert result["resumed_best_epoch"] == result["first_best"][1]
    assert result["resumed_wait"] > result["first_best"][2]


# -- torch backend, in this process ---------------------------------------------------------------


def test_save_dir_is_required():
    with pytest.raises(hookline.SettingsError, match="save_dir") as raised:
        HooklineCallback()
    assert "\n" not in str(raised.value)


def test_an_unknown_setting_names_the_closest(tmp_path):
    with pytest.raises(hookline.SettingsError, match="patience"):
        HooklineCallback(save_dir=tmp_path, early_stopping=True, patiense=3)


def test_metric_names():
    assert keras_metric_name("loss") == "train/loss"
    assert keras_metric_name("val_mae") == "val/mae"
    assert keras_metric_name("learning_rate") == "lr"


def test_observers_and_the_installed_plugin(tmp_path, epoch_timer_installed):
    result = scenarios.observers(tmp_path / "run")
    check_observers(result, timer=True)
    assert result["rows"][0]["time/epoch"]


def test_early_stopping_ends_fit_at_the_predicted_epoch(tmp_path):
    check_early_stopping(scenarios.early_stopping(tmp_path / "run"))


def test_the_optimizer_uses_hooklines_learning_rate(tmp_path):
    check_lr_schedule(scenarios.lr_schedule(tmp_path / "run"))


def test_a_keras_learning_rate_schedule_is_refused_in_one_line(tmp_path):
    check_schedule_refused(scenarios.schedule_refused(tmp_path / "run"))


def test_an_exception_in_the_model_reaches_every_plugin(tmp_path):
    check_host_exception(scenarios.host_exception(tmp_path / "run"))


def test_a_failing_observer_is_disabled_and_fit_goes_on(tmp_path):
    check_failing_observer(scenarios.failing_observer(tmp_path / "run"))


def test_checkpoints_hold_the_keras_model_and_optimizer_and_resume(tmp_path):
    check_checkpoint(scenarios.checkpoint(tmp_path / "run"))


def test_unsupported_hooks_warn_once_at_registration(tmp_path):
    class NeedsBackward(hookline.Callback):
        def on_before_backward(self) -> None: ...

        def on_params_update(self) -> None: ...

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        HooklineCallback([NeedsBackward()], save_dir=tmp_path)
    messages = [str(w.message) for w in caught if issubclass(w.category, UnsupportedHookWarning)]
    assert len(messages) == 1, messages
    assert "on_before_backward" in messages[0]
    assert "Keras" in messages[0]
    assert messages[0].startswith("hookline: plugin ")


def test_a_failure_outside_the_step_functions_is_seen_through_guard(tmp_path):
    recorder = scenarios.Recorder()
    callback = HooklineCallback([recorder], save_dir=tmp_path)
    x, y = scenarios.data()

    class Failing(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyError("another callback")

    net = scenarios.model()
    with pytest.raises(KeyError), callback.guard():
        net.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback, Failing()])
    assert recorder.calls[-2:] == ["on_exception", "teardown"]
    assert "KeyError" in recorder.exception


def test_state_round_trip_and_learning_rate(tmp_path):
    net = scenarios.model(keras.optimizers.SGD(0.1))
    net.optimizer.build(net.trainable_variables)
    state = KerasState(net)
    assert isinstance(state, hookline.StateTask)
    assert state.gradients() == {}
    with pytest.raises(hookline.UserError, match="gradients are not visible"):
        state.gradient_norm()
    assert state.learning_rates() == [pytest.approx(0.1)]
    state.set_learning_rates([0.02])
    assert state.learning_rates() == [pytest.approx(0.02)]
    saved = state.state_dict()
    assert saved["model_paths"] == [v.path for v in net.variables]
    assert len(saved["model"]) == len(net.variables)
    for variable in net.trainable_variables:
        variable.assign(variable.value * 0)
    state.load_state_dict(saved)
    kernel = saved["model"][0]
    assert (keras.ops.convert_to_numpy(net.trainable_variables[0].value) == kernel).all()
    payload = state.save_checkpoint({"task": saved, "n": 1})
    loaded = state.load_checkpoint(payload, "x")["task"]
    assert loaded["model_paths"] == saved["model_paths"]
    assert all((a == b).all() for a, b in zip(loaded["model"], saved["model"], strict=True))
    with pytest.raises(ValueError, match="has 4 variables; the state holds 1"):
        state.load_state_dict({"model": saved["model"][:1]})
    with pytest.raises(ValueError, match="learning rates for 1"):
        state.set_learning_rates([0.1, 0.2])


# -- JAX backend, in a subprocess job --------------------------------------------------------------


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("keras_jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(sys.path),
           "JAX_PLATFORMS": "cpu"}
    completed = subprocess.run(
        [sys.executable, str(JOBS / "keras_jax.py"), str(out)], env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "observers", "early_stopping", "lr_schedule", "schedule_refused", "host_exception",
    "failing_observer", "checkpoint",
])
def test_jax_backend(jax_results, name):
    assert jax_results["backend"] == "jax"
    check = globals()[f"check_{name}"]
    if name == "observers":
        check(jax_results[name], timer=False)
    else:
        check(jax_results[name])


def test_an_interruption_stops_fit_after_the_batch(tmp_path):
    class Interrupt(scenarios.Recorder):
        def on_train_batch_end(self, trainer, batch_idx) -> None:
            if batch_idx == 1:
                trainer.interrupt("asked to")

    recorder = Interrupt()
    callback = HooklineCallback([recorder], save_dir=tmp_path)
    batches: list[int] = []
    x, y = scenarios.data()
    scenarios.model().fit(
        x, y, batch_size=16, epochs=3, validation_data=(x, y), verbose=0,
        callbacks=[callback, keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: batches.append(batch))],
    )
    assert batches == [0, 1]
    assert recorder.calls == ["on_train_start", "on_train_epoch_start", "on_train_end",
                              "teardown"]
    assert callback.run.interrupted
    assert json.loads((tmp_path / "summary.json").read_text())["ended"] == "interrupted: asked to"
