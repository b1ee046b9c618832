"""Per-plugin time accounting: the profile table (``profile=True``) adds up to the measured
hook time and reaches summary.json; with ``profile_memory`` each plugin's row also has the
memory it kept and its peak, nested hooks included; the slow-plugin line names a plugin that
sleeps in a per-batch hook, once, and no other.  All cost nothing when off: no implementation
is wrapped, and no memory is traced."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import tracemalloc
import warnings

import pytest

import hookline
from hookline import PluginManager, Trainer
from hookline.flags import apply_flags, implied_flags
from hookline.plugins.slow_plugins import SlowPluginWarning
from hookline.testing import LinearRegressionTask, make_batches, run_cli


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


MB = 1_000_000
KIB = 1024


class Keeper(hookline.Callback):
    """Keeps about 1 MB of Python objects at the end of each training epoch."""

    def __init__(self):
        self.kept = []

    def on_train_epoch_end(self):
        self.kept.append(bytearray(MB))


class Spiker(hookline.Callback):
    """Uses 5 MB for a moment in each epoch's end and keeps nothing."""

    def on_fit_epoch_end(self):
        block = bytearray(5 * MB)
        del block


class ProbeSpecs:
    @hookline.hookspec
    def on_memory_probe(self, trainer):
        """Fired by :class:`Outer` from inside its own ``on_train_epoch_end``."""


class Outer(hookline.Callback):
    """Uses 4 MB for a moment, then fires a hook whose implementation uses 1 MB: the nested
    call resets tracemalloc's peak, which must not hide the outer call's 4 MB."""

    hookspecs = ProbeSpecs

    def on_train_epoch_end(self, trainer):
        block = bytearray(4 * MB)
        del block
        trainer.call("on_memory_probe", trainer=trainer)


class Inner(hookline.Callback):
    def on_memory_probe(self):
        block = bytearray(MB)
        del block


class TracingSpy(hookline.Callback):
    """Whether tracemalloc traced while the run's hooks ran."""

    def __init__(self):
        self.tracing = []

    def on_train_batch_end(self):
        self.tracing.append(tracemalloc.is_tracing())


def memory_profile(manager, tmp_path, epochs=3, **settings):
    """Train with the profile (and the summary) on; the profile table from summary.json, as
    plugin rows by (hook, plugin), and the printed table."""
    apply_flags(manager, {"profile": True, "summary": True})
    printed = io.StringIO()
    manager.get_plugin("profile").stream = printed
    trainer = Trainer(LinearRegressionTask(2, lr=0.01), manager=manager)
    trainer.fit(batches(4), epochs=epochs, save_dir=tmp_path, **settings)
    table = json.loads((tmp_path / "summary.json").read_text())["profile"]
    rows = {(row["hook"], plugin["plugin"]): plugin
            for row in table["hooks"] for plugin in row["plugins"]}
    return rows, printed.getvalue()


@pytest.fixture
def not_tracing():
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing (PYTHONTRACEMALLOC?)")


def test_memory_profile_shows_what_a_plugin_keeps_and_its_peak(manager, tmp_path, not_tracing):
    keeper = Keeper()
    manager.register(keeper, "keeper")
    manager.register(Spiker(), "spiker")
    rows, printed = memory_profile(manager, tmp_path, epochs=3, profile_memory=True)
    kept = rows[("on_train_epoch_end", "keeper")]
    assert kept["calls"] == 3
    # 3 epochs x 1 MB kept (the list holding them: a few dozen bytes more)
    assert kept["retained_kib"] == pytest.approx(3 * MB / KIB, abs=16)
    assert kept["peak_kib"] == pytest.approx(MB / KIB, abs=16)  # one call's 1 MB
    spiked = rows[("on_fit_epoch_end", "spiker")]
    assert spiked["peak_kib"] >= 5 * MB / KIB
    assert spiked["peak_kib"] == pytest.approx(5 * MB / KIB, abs=16)
    assert spiked["retained_kib"] == pytest.approx(0, abs=16)
    assert all({"retained_kib", "peak_kib"} <= row.keys() for row in rows.values())
    assert "retained KiB" in printed
    assert "peak KiB" in printed
    assert not tracemalloc.is_tracing()  # the profile started it, and stopped it at the end


def test_a_nested_hook_keeps_the_outer_calls_peak(manager, tmp_path, not_tracing):
    manager.register(Outer(), "outer")
    manager.register(Inner(), "inner")
    rows, _ = memory_profile(manager, tmp_path, epochs=2, profile_memory=True)
    outer = rows[("on_train_epoch_end", "outer")]
    inner = rows[("on_memory_probe", "inner")]
    assert inner["calls"] == outer["calls"] == 2
    assert outer["peak_kib"] == pytest.approx(4 * MB / KIB, abs=16)  # not the inner 1 MB
    assert inner["peak_kib"] == pytest.approx(MB / KIB, abs=16)  # not the outer 4 MB
    assert outer["retained_kib"] == pytest.approx(0, abs=16)
    assert inner["retained_kib"] == pytest.approx(0, abs=16)


class ThreadedOuter(Outer):
    """Like :class:`Outer`, but fires the probe from a thread of its own."""

    def on_train_epoch_end(self, trainer):
        block = bytearray(4 * MB)
        del block
        thread = threading.Thread(
            target=lambda: trainer.call("on_memory_probe", trainer=trainer)
        )
        thread.start()
        thread.join()


def test_a_hook_fired_from_another_thread_keeps_the_running_calls_peak(
    manager, tmp_path, not_tracing
):
    manager.register(ThreadedOuter(), "outer")
    manager.register(Inner(), "inner")
    rows, _ = memory_profile(manager, tmp_path, epochs=2, profile_memory=True)
    assert rows[("on_train_epoch_end", "outer")]["peak_kib"] == pytest.approx(4 * MB / KIB,
                                                                            abs=16)
    assert rows[("on_memory_probe", "inner")]["peak_kib"] == pytest.approx(MB / KIB, abs=16)


def test_no_memory_is_traced_or_reported_without_profile_memory(manager, tmp_path, not_tracing):
    spy = TracingSpy()
    manager.register(spy, "spy")
    manager.register(Keeper(), "keeper")
    rows, printed = memory_profile(manager, tmp_path, epochs=1)
    assert spy.tracing
    assert not any(spy.tracing)
    assert rows[("on_train_epoch_end", "keeper")].keys() == {
        "plugin", "calls", "total_ms", "mean_us",
    }
    assert all("retained_kib" not in row and "peak_kib" not in row for row in rows.values())
    assert "KiB" not in printed
    impls = manager.hook.on_train_epoch_end.get_hookimpls()
    assert all(not hasattr(impl.function, "__wrapped__") for impl in impls)  # unwrapped again


def test_tracing_started_by_someone_else_is_left_running(manager, tmp_path, not_tracing):
    spy = TracingSpy()
    manager.register(spy, "spy")
    manager.register(Keeper(), "keeper")
    tracemalloc.start()
    try:
        rows, _ = memory_profile(manager, tmp_path, epochs=2, profile_memory=True)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
    assert all(spy.tracing)
    assert rows[("on_train_epoch_end", "keeper")]["retained_kib"] == pytest.approx(
        2 * MB / KIB, abs=16)


def test_a_bridge_turns_the_profile_on_for_profile_memory(manager, tmp_path):
    torch = pytest.importorskip("torch")
    from hookline.backends.torch.host import TorchHostState
    from hookline.bridges.loop import HookLoop

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = HookLoop(TorchHostState(model, optimizer), save_dir=tmp_path, manager=manager,
                    profile_memory=True)
    assert loop.manager.get_plugin("profile").profile_memory is True


def test_model_turns_the_profile_on_for_profile_memory(manager, tmp_path, not_tracing):
    """``profile_memory=True`` asks for the profile, with hookline.Model as with a bridge;
    before, the profile being off, the setting was unknown."""
    model = hookline.Model(LinearRegressionTask(2, lr=0.01), manager=manager)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        model.train(batches(4), epochs=1, project=str(tmp_path), profile_memory=True,
                    verbose=False)
    assert manager.get_plugin("profile").profile_memory is True
    assert "peak KiB" in printed.getvalue()
    assert implied_flags(PluginManager(), {"profile_memory": False}) == {}  # asks for nothing


def test_the_command_line_turns_the_profile_on_for_profile_memory(tmp_path, not_tracing):
    result = run_cli(["train", "epochs=1", "batch=256", "plots=false", "profile_memory=true"],
                     tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "peak KiB" in result.stdout
    assert "profile" in json.loads((result.run_dir / "summary.json").read_text())
    # a checkpoint records profile=false, which must not undo what profile_memory asks for
    last = result.run_dir / "weights" / "last.pt"
    resumed = run_cli(["train", f"resume={last}", "epochs=2", "profile_memory=true"], tmp_path)
    assert resumed.exit_code == 0, resumed.stderr
    assert "peak KiB" in resumed.stdout
    validated = run_cli(["val", f"weights={last}", "profile_memory=true"], tmp_path)
    assert validated.exit_code == 0, validated.stderr  # the profile times training alone


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


def test_a_setting_of_a_builtin_turned_off_is_one_line_naming_the_flag(tmp_path):
    """``patience=3 early_stopping=false`` would do nothing: the command line and Model both
    say so (before, 'unknown setting' suggested a different setting)."""
    result = run_cli(["train", "epochs=1", "patience=3", "early_stopping=false"], tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "hookline train: error: setting 'patience' belongs to early_stopping, which "
        "early_stopping=false turns off"
    )
    model = hookline.Model(LinearRegressionTask(2, lr=0.01), manager=PluginManager())
    with pytest.raises(hookline.SettingsError, match="'project' belongs to save, which save=false"):
        model.train(batches(4), epochs=1, project=str(tmp_path), save=False)
