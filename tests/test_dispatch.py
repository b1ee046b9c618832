"""The engine's dispatch table: a hook without implementations never reaches pluggy."""

from __future__ import annotations

import subprocess
import sys

from hookline import Callback, Predictor, Trainer, Validator
from hookline.testing import HookRecorder
from tests.conftest import regression_batches


def test_hooks_without_implementations_are_never_called_through_pluggy(task, manager):
    class OnlyEpochEnd(Callback):
        def on_train_epoch_end(self):
            pass

    manager.register(OnlyEpochEnd())
    with HookRecorder(manager) as recorder:
        Trainer(task, manager=manager).fit(
            regression_batches(16, 4), regression_batches(8, 4), epochs=3, log_every_n_steps=1
        )
        Validator(task, manager=manager).validate(regression_batches(8, 4))
        Predictor(task, manager=manager).predict(regression_batches(8, 4))
    assert recorder.names == ["on_train_epoch_end"] * 3


def test_dispatch_table_follows_register_and_unregister(manager):
    assert manager.dispatch == {}

    class A(Callback):
        def on_train_end(self):
            pass

        def on_log(self, metrics):
            pass

    plugin = A()
    manager.register(plugin)
    assert set(manager.dispatch) == {"on_train_end", "on_log"}
    manager.set_blocked("A")
    assert manager.dispatch == {}
    manager.unblock("A")
    function = lambda trainer: None  # noqa: E731
    manager.add_callback("on_epoch_end", function)
    assert set(manager.dispatch) == {"on_train_epoch_end"}
    manager.remove_callback("on_epoch_end", function)
    assert manager.dispatch == {}


def test_engine_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import hookline, hookline.engine, hookline.backends.base\n"
        "from hookline.engine import Trainer, Validator, Predictor, Exporter\n"
        "assert sys.modules['torch'] is None\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


LOG_ARGUMENTS = {"run": None, "metrics": {}, "step": 0, "epoch": 0, "phase": "train"}


def test_rank_zero_only_plugins_cost_nothing_on_other_ranks(monkeypatch):
    from hookline import PluginManager, hookimpl

    calls = []

    class Writer(Callback):
        rank_zero_only = True

        def hookline_add_options(self, options):
            options.add("out", "x", help="where to write")

        def on_log(self):
            calls.append("writer")

        def on_train_end(self):
            calls.append("writer end")

    class Decider:
        @hookimpl
        def on_log(self):
            calls.append("decider")

    monkeypatch.setenv("RANK", "1")
    manager = PluginManager()
    manager.register(Writer())
    manager.register(Decider())
    assert set(manager.dispatch) == {"hookline_add_options", "on_log"}  # no on_train_end
    with HookRecorder(manager) as recorder:
        manager.call("on_log", **LOG_ARGUMENTS)
        settings = manager.configure({"out": "y"})
    assert calls == ["decider"]
    assert settings["out"] == "y"  # its settings are still declared on rank 1
    assert recorder.names == ["on_log", "hookline_add_options"]
    manager.set_rank(0)
    manager.call("on_log", **LOG_ARGUMENTS)
    assert sorted(calls[1:]) == ["decider", "writer"]
    assert "on_train_end" in manager.dispatch
