"""hookline's plugins in a hand-written torch loop, through :class:`HookLoop`: the built-ins
and an installed plugin run unchanged, early stopping stops the loop at the predicted epoch,
the LR schedule wins over the loop's own scheduler, and failures end the run cleanly."""

from __future__ import annotations

import csv
import json
import math
import warnings
from typing import ClassVar

import pytest

torch = pytest.importorskip("torch")

import hookline  # noqa: E402
from hookline import PluginManager, SettingsError  # noqa: E402
from hookline.backends.torch.host import TorchHostState  # noqa: E402
from hookline.bridges.loop import HookLoop, UnsupportedHookWarning  # noqa: E402
from hookline.plugins.lr_scheduler import LRScheduler  # noqa: E402
from hookline.testing import HookRecorder  # noqa: E402

BATCHES = 4


def make_model() -> tuple[torch.nn.Module, torch.optim.Optimizer, list]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(BATCHES * 8, 4)
    y = (x[:, 0] > 0).long()
    return model, optimizer, list(zip(x.split(8), y.split(8), strict=True))


def train(loop: HookLoop, model, optimizer, data, val_losses, *, scheduler=None, used=None):
    """The user's own loop, with hookline's events fired at their places."""
    with loop.fit(epochs=len(val_losses), train_data=data) as run:
        for epoch in run.epochs_to_run():
            loop.epoch_start(epoch)
            for batch_idx, (inputs, targets) in enumerate(data):
                loop.batch_start(batch_idx)
                loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                loop.before_backward(loss)
                loss.backward()
                loop.after_backward()
                loop.before_optimizer_step()
                if used is not None:
                    used.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()  # the loop's own scheduler rewrites the rate
                loop.optimizer_stepped()
                optimizer.zero_grad()
                loop.batch_end(batch_idx, loss=loss.detach())
            loop.validation_end({"val/loss": val_losses[epoch]})
            loop.epoch_end({"train/loss": loss.detach()})
    return run


def test_the_built_ins_and_an_installed_plugin_run_in_a_hand_written_loop(
    tmp_path, epoch_timer_installed
):
    model, optimizer, data = make_model()
    # val/loss improves twice, then not for two epochs: patience 2 stops after epoch 4 of 6
    val_losses = [1.0, 0.8, 0.85, 0.9, 0.7, 0.6]
    loop = HookLoop(
        TorchHostState(model, optimizer), save_dir=tmp_path / "run",
        early_stopping=True, patience=2, checkpoint=True,
    )
    assert loop.manager.has_plugin(epoch_timer_installed)
    run = train(loop, model, optimizer, data, val_losses)
    assert run.epoch == 3
    assert "early stopping" in run.stop_reason
    assert run.global_step == 4 * BATCHES
    with open(tmp_path / "run" / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["val/loss"]) for row in rows] == val_losses[:4]
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert all(float(row["time/epoch"]) > 0 for row in rows)  # the installed plugin
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ended"].startswith("stopped early")
    assert summary["best"]["epoch"] == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [record["metrics"]["val/loss"] for record in records
            if record["phase"] == "epoch"] == val_losses[:4]
    # the best checkpoint holds the host's model as it was after epoch 2, in hookline's format
    best = hookline.load_checkpoint(tmp_path / "run" / "weights" / "best.pt",
                                    TorchHostState(model, optimizer))
    assert best["progress"]["epoch"] == 2
    assert set(best["task"]) == {"model", "optimizer"}
    last = hookline.load_checkpoint(tmp_path / "run" / "weights" / "last.pt",
                                    TorchHostState(model, optimizer))
    torch.testing.assert_close(last["task"]["model"]["weight"], model.weight.detach())


def test_the_hooks_fire_in_the_engines_order(tmp_path):
    model, optimizer, data = make_model()
    manager = PluginManager()
    loop = HookLoop(TorchHostState(model, optimizer), save_dir=tmp_path, manager=manager,
                    save=False, csv=False, jsonl=False, summary=False, resources=False,
                    plots=False, slow_plugins=False)
    with HookRecorder(manager, listen_all=True) as recorder:
        train(loop, model, optimizer, data[:1], [1.0])
    batch = ["on_train_batch_start", "on_before_backward", "on_after_backward",
             "on_before_optimizer_step", "on_params_update", "on_before_zero_grad",
             "on_train_batch_end"]
    assert [name for name in recorder.names if not name.startswith("hookline_")] == [
        "on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start",
        "on_train_epoch_start", *batch, "on_val_start", "on_val_end", "on_train_epoch_end",
        "on_fit_epoch_end", "on_log", "on_train_end", "teardown",
    ]


def test_a_plugins_learning_rate_wins_over_the_loops_own_scheduler(tmp_path):
    model, optimizer, data = make_model()
    host_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    loop = HookLoop(TorchHostState(model, optimizer), save_dir=tmp_path,
                    plugins=[LRScheduler(interval="step")], schedule="linear")
    used: list[float] = []
    train(loop, model, optimizer, data, [1.0, 1.0], scheduler=host_scheduler, used=used)
    steps = 2 * BATCHES
    expected = [0.1 * (1 - step / steps) for step in range(steps)]
    assert used == pytest.approx(expected)


def test_a_failure_in_the_loop_reaches_every_plugin_and_is_recorded(tmp_path):
    model, optimizer, _ = make_model()
    closed = []

    class Closer(hookline.Callback):
        def on_exception(self, exception):
            closed.append(("exception", type(exception).__name__))

        def teardown(self):
            closed.append(("teardown", None))

    loop = HookLoop(TorchHostState(model, optimizer), plugins=[Closer()], save_dir=tmp_path)

    def failing_loop():
        with loop.fit(epochs=2) as run:
            loop.epoch_start(0)
            loop.batch_end(0, loss=torch.tensor(1.0))
            _ = 1 / 0  # the host fails mid-epoch
        return run

    with pytest.raises(ZeroDivisionError):
        failing_loop()
    run = loop.run
    assert closed == [("exception", "ZeroDivisionError"), ("teardown", None)]
    assert run.should_stop is False
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ended"].startswith("failed: ZeroDivisionError")


def test_a_failing_observer_is_disabled_and_the_loop_trains_on(tmp_path):
    model, optimizer, data = make_model()

    class Broken(hookline.Callback):
        error_policy = "disable"

        def on_train_epoch_end(self):
            raise RuntimeError("tracker is down")

    loop = HookLoop(TorchHostState(model, optimizer), plugins=[Broken()], save_dir=tmp_path)
    with pytest.warns(hookline.PluginDisabledWarning, match="tracker is down"):
        run = train(loop, model, optimizer, data, [1.0, 0.9, 0.8])
    assert run.epoch == 2
    assert not run.should_stop
    with open(tmp_path / "results.csv") as file:
        assert len(list(csv.DictReader(file))) == 3


def test_settings_are_checked_when_the_loop_is_made(tmp_path):
    model, optimizer, _ = make_model()
    with pytest.raises(SettingsError, match=r"patiense.*patience"):
        HookLoop(TorchHostState(model, optimizer), save_dir=tmp_path, early_stopping=True,
                 patiense=3)
    # a setting that belongs to one control plugin alone asks for it
    asked = HookLoop(TorchHostState(model, optimizer), save_dir=tmp_path, patience=3)
    assert asked.manager.has_plugin("early_stopping")
    assert not asked.manager.has_plugin("checkpoint")
    with pytest.raises(SettingsError, match="csv"):
        HookLoop(TorchHostState(model, optimizer), save_dir=tmp_path, csv="maybe")


def test_a_plugin_implementing_a_hook_the_host_cannot_fire_is_warned_once(tmp_path):
    class NoBackward(HookLoop):
        host = "compiled host"
        unsupported: ClassVar = {"on_after_backward": "backward is compiled"}

    class GradientWatcher(hookline.Callback):
        def on_after_backward(self):
            pass

    model, optimizer, _ = make_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = NoBackward(TorchHostState(model, optimizer), plugins=[GradientWatcher()],
                          save_dir=tmp_path)
        loop.warn_unsupported()
    found = [str(w.message) for w in caught if issubclass(w.category, UnsupportedHookWarning)]
    assert len(found) == 1
    assert "GradientWatcher" in found[0] or "gradientwatcher" in found[0].lower()
    assert "on_after_backward" in found[0]
    assert "compiled host" in found[0]


def test_the_run_a_plugin_sees_is_the_public_training_run(tmp_path):
    model, optimizer, data = make_model()
    seen = []

    class Reader(hookline.Callback):
        def on_fit_epoch_end(self, trainer, metrics):
            seen.append((isinstance(trainer, hookline.TrainingRun), trainer.epoch,
                         trainer.epochs, trainer.global_step, dict(metrics)))

    loop = HookLoop(TorchHostState(model, optimizer), plugins=[Reader()], save_dir=tmp_path)
    train(loop, model, optimizer, data, [0.5])
    assert seen[0][:4] == (True, 0, 1, BATCHES)
    assert seen[0][4]["val/loss"] == 0.5
    assert math.isfinite(seen[0][4]["train/loss"])


def test_a_loop_let_go_frees_its_state_run_and_data_at_once(tmp_path):
    """Dropping the HookLoop (as dropping a host trainer drops its bridge) frees the state
    over the host's model, the run and the data without waiting for the cycle collector."""
    import gc
    import weakref

    class Batches(list):
        """Batches that can be referred to weakly (a list cannot)."""

    def fit_once(name: str) -> dict[str, weakref.ref]:
        model, optimizer, data = make_model()
        data = Batches(data)
        state = TorchHostState(model, optimizer)
        loop = HookLoop(state, save_dir=tmp_path / name, checkpoint=True)
        run = train(loop, model, optimizer, data, [1.0, 0.9])
        return {"state": weakref.ref(state), "run": weakref.ref(run), "data": weakref.ref(data)}

    fit_once("first")  # lazy imports of a first run may keep their frames
    gc.collect()
    gc.disable()
    try:
        left = fit_once("second")
        assert [name for name, ref in left.items() if ref() is not None] == []
    finally:
        gc.enable()
