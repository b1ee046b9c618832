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
