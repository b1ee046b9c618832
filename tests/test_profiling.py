"""Per-plugin time accounting: the profile table (``profile=True``) adds up to the measured
hook time and reaches summary.json; the slow-plugin line names a plugin that sleeps in a
per-batch hook, once, and no other.  Both cost nothing when off: no implementation is wrapped."""

from __future__ import annotations

import io
import json
import time
import warnings

import pytest

import hookline
from hookline import Trainer
from hookline.flags import apply_flags
from hookline.plugins.slow_plugins import SlowPluginWarning
from hookline.testing import LinearRegressionTask, make_batches


def batches(count: int):
    rows = [[float(i % 7), 1.0] for i in range(count)]
    return make_batches(rows, [sum(row) for row in rows], 1)


class Sleeper(hookline.Callback):
    """Sleeps a known time in one per-batch and one per-epoch hook."""

    def on_train_batch_end(self):
        time.sleep(0.002)

    def on_fit_epoch_end(self):
        time.sleep(0.005)


def test_the_profile_table_adds_up_to_the_measured_hook_time(manager, tmp_path):
    manager.register(Sleeper(), "sleeper")
    apply_flags(manager, {"profile": True, "summary": True, "csv": True})
    measured: dict[str, float] = {}
    started: list[float] = []

    def before(hook, impls, kwargs):
        started.append(time.perf_counter())

    def after(outcome, hook, impls, kwargs):
        measured[hook] = measured.get(hook, 0.0) + time.perf_counter() - started.pop()

    undo = manager.add_hookcall_monitoring(before, after)
    printed = io.StringIO()
    manager.get_plugin("profile").stream = printed
    trainer = Trainer(LinearRegressionTask(2, lr=0.01), manager=manager)
    trainer.fit(batches(10), epochs=3, save_dir=tmp_path)
    undo()

    table = json.loads((tmp_path / "summary.json").read_text())["profile"]
    rows = {row["hook"]: row for row in table["hooks"]}
    batch_end = rows["on_train_batch_end"]
    assert batch_end["calls"] == 30
    (sleeper,) = [p for p in batch_end["plugins"] if p["plugin"] == "sleeper"]
    # The timers nest: the sleeper's own timer inside this test's monitor, which pluggy runs
    # inside the profile's (added later, at the start of the run).  So each inequality below
    # holds however the machine is loaded; the slack between them is the monitors' own cost.
    assert 30 * 2.0 <= sleeper["total_ms"] <= measured["on_train_batch_end"] * 1000 + 1e-3
    for hook, row in rows.items():
        plugins_ms = sum(plugin["total_ms"] for plugin in row["plugins"])
        assert plugins_ms <= measured[hook] * 1000 + 1e-3  # plugins' time is inside the hook's
        assert measured[hook] * 1000 <= row["total_ms"] + 1e-3  # the hook's call, dispatch too
    # and the slack is small: where the time goes (the sleeps), the profile's rows and the
    # independent measurement agree within 10%
    slept = rows["on_train_batch_end"]["total_ms"] + rows["on_fit_epoch_end"]["total_ms"]
    independent = (measured["on_train_batch_end"] + measured["on_fit_epoch_end"]) * 1000
    assert slept == pytest.approx(independent, rel=0.1)
    assert table["total_ms"] == pytest.approx(sum(row["total_ms"] for row in rows.values()),
                                              abs=0.01)
    assert "on_train_batch_end" in printed.getvalue()
    assert "sleeper" in printed.getvalue()


def test_no_implementation_is_wrapped_when_profiling_is_off(manager):
    class Inspector(hookline.Callback):
        def __init__(self):
            self.functions = []

        def on_train_batch_end(self, trainer):
            impls = trainer.manager.hook.on_train_batch_end.get_hookimpls()
            self.functions.append([impl.function for impl in impls])

    inspector = Inspector()
    manager.register(inspector)
    apply_flags(manager, {"profile": False, "slow_plugins": False})
    Trainer(LinearRegressionTask(2, lr=0.01), manager=manager).fit(batches(8), epochs=1)
    assert all(functions == [inspector.on_train_batch_end] for functions in inspector.functions)


def run_with_slow_check(manager, task, data, epochs):
    apply_flags(manager, {"slow_plugins": True})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(task, manager=manager).fit(data, epochs=epochs)
    return [str(w.message) for w in caught if issubclass(w.category, SlowPluginWarning)]


def test_the_slow_plugin_line_names_a_plugin_that_sleeps_per_batch(manager):
    manager.register(Sleeper(), "sleeper")
    lines = run_with_slow_check(manager, LinearRegressionTask(2, lr=0.01), batches(20), 4)
    (line,) = lines  # once per run, although 80 batches slept
    assert line.startswith("hookline: plugin 'sleeper' takes ")
    assert "of the training step time (its on_train_batch_end: " in line
    assert "steps 5-55" in line


def test_a_run_shorter_than_the_window_is_checked_at_its_end(manager):
    manager.register(Sleeper(), "sleeper")
    (line,) = run_with_slow_check(manager, LinearRegressionTask(2, lr=0.01), batches(12), 1)
    assert "plugin 'sleeper'" in line
    assert "steps 5-12" in line


def test_no_slow_plugin_line_for_the_built_ins_on_a_real_task(manager, backend):
    apply_flags(manager, hookline.flags.DEFAULT_FLAGS)
    task = backend.make_task()
    assert run_with_slow_check(manager, task, backend.batches(960, 16), 1) == []
    assert manager.get_plugin("slow_plugins").reported == []


def test_the_share_is_a_setting_checked_at_configuration(manager):
    apply_flags(manager, {"slow_plugins": True})
    with pytest.raises(hookline.SettingsError, match="'slow_plugin_share' must be a share"):
        Trainer(LinearRegressionTask(2), manager=manager).fit(batches(2), slow_plugin_share=0)
