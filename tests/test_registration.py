"""Every way of writing a plugin fires, with exactly the arguments it asks for."""

from __future__ import annotations

import pytest

import hookline
from hookline import Callback, PluginManager, Trainer, hookimpl
from tests.conftest import regression_batches
from tests.sample_plugins import module_plugin


def test_callback_subclass_methods_and_aliases_fire_without_decorators(task, manager):
    class Recorder(Callback):
        def __init__(self):
            self.events = []

        def on_epoch_start(self, trainer):
            self.events.append(("epoch_start", trainer.epoch))

        def on_batch_start(self, batch_idx):
            self.events.append(("batch_start", batch_idx))

        def on_batch_end(self, batch_idx):
            self.events.append(("batch_end", batch_idx))

        def on_epoch_end(self, trainer):
            self.events.append(("epoch_end", trainer.epoch))

        def helper(self):  # not a hook: ignored
            raise AssertionError("helper must not be called")

    recorder = Recorder()
    Trainer(task, [recorder], manager=manager).fit(regression_batches(8, 4), epochs=2)
    one_epoch = lambda e: [  # noqa: E731
        ("epoch_start", e), ("batch_start", 0), ("batch_end", 0), ("batch_start", 1),
        ("batch_end", 1), ("epoch_end", e),
    ]
    assert recorder.events == one_epoch(0) + one_epoch(1)
    (info,) = manager.list_plugins()
    assert info.hooks == (  # on_epoch_end is the whole epoch's end, validation included
        "on_fit_epoch_end", "on_train_batch_end", "on_train_batch_start", "on_train_epoch_start"
    )


def test_module_plugin_with_decorated_functions_and_specname(task, manager):
    module_plugin.seen.clear()
    Trainer(task, [module_plugin], manager=manager).fit(regression_batches(8, 4), epochs=2)
    assert module_plugin.seen == [
        ("on_train_start", 2), ("batch", 0), ("batch", 1), ("epoch", 0), ("batch", 0),
        ("batch", 1), ("epoch", 1),
    ]
    assert manager.list_plugins()[0].name == "tests.sample_plugins.module_plugin"


def test_add_callback_functions_fire_and_remove_callback_stops_them(task, manager):
    epochs = []

    def on_end(trainer):
        epochs.append(trainer.epoch)

    trainer = Trainer(task, manager=manager)
    trainer.add_callback("on_train_epoch_end", on_end)
    trainer.add_callback("on_epoch_end", lambda trainer: epochs.append("alias"))
    trainer.fit(regression_batches(4, 4), epochs=2)
    assert epochs == [0, "alias", 1, "alias"]  # the alias fires after the epoch's validation
    trainer.remove_callback("on_train_epoch_end", on_end)
    with pytest.raises(ValueError, match="is not a callback"):
        trainer.remove_callback("on_train_epoch_end", on_end)
    epochs.clear()
    trainer.fit(regression_batches(4, 4), epochs=1)
    assert epochs == ["alias"]


def test_add_callback_refuses_non_functions_and_unknown_events(manager):
    with pytest.raises(TypeError, match="needs a function or method"):
        manager.add_callback("on_train_end", print)
    with pytest.raises(hookline.PluginValidationError, match="did you mean 'on_train_end'"):
        manager.add_callback("on_trian_end", lambda trainer: None)


def test_an_implementation_receives_exactly_the_arguments_it_names(task, manager):
    received = []

    class Subset:
        @hookimpl
        def on_train_batch_end(self, loss, batch_idx):
            received.append(("batch", batch_idx, float(loss) >= 0))

        @hookimpl
        def on_log(self, phase, metrics):
            received.append(("log", phase, sorted(metrics)))

        @hookimpl
        def teardown(self):
            received.append(("teardown",))

    Trainer(task, [Subset()], manager=manager).fit(
        regression_batches(8, 4), epochs=1, log_every_n_steps=0
    )
    assert received == [
        ("batch", 0, True), ("batch", 1, True), ("log", "epoch", ["train/loss"]), ("teardown",)
    ]


def test_tryfirst_and_trylast_order_implementations(task, manager):
    order = []

    class Early:
        @hookimpl(tryfirst=True)
        def on_train_start(self):
            order.append("tryfirst")

    class Plain:
        @hookimpl
        def on_train_start(self):
            order.append("plain")

    class Late(Callback):
        @hookimpl(trylast=True)
        def on_train_start(self):
            order.append("trylast")

    # registered so that plain LIFO order would be the reverse of the expected one
    Trainer(task, [Early(), Plain(), Late()], manager=manager).fit(
        regression_batches(4, 4), epochs=1
    )
    assert order == ["tryfirst", "plain", "trylast"]


def test_on_plugin_registered_is_historic(manager):
    seen = []

    class Watcher:
        @hookimpl
        def on_plugin_registered(self, plugin):
            seen.append(type(plugin).__name__)

    class First(Callback):
        pass

    class Second(Callback):
        pass

    manager.register(First())
    manager.register(Watcher())
    manager.register(Second())
    assert seen == ["First", "Watcher", "Second"]


def test_two_instances_of_a_class_get_distinct_names(manager):
    class Same(Callback):
        def on_train_end(self):
            pass

    assert [manager.register(Same()), manager.register(Same())] == ["Same", "Same-2"]


def test_blocked_names_do_not_register(manager):
    class Noisy(Callback):
        def on_train_end(self):
            pass

    manager.set_blocked("Noisy")
    assert manager.register(Noisy()) is None
    assert manager.list_plugins() == []
    assert manager.blocked_names() == ["Noisy"]


def test_plugins_declare_and_read_settings(task, manager):
    class Patience(Callback):
        def hookline_add_options(self, options):
            options.add("patience", 3, help="epochs without improvement", owner="patience")

        def hookline_configure(self, settings):
            self.patience = settings["patience"]

    plugin = Patience()
    trainer = Trainer(task, [plugin], manager=manager)
    trainer.fit(regression_batches(4, 4), epochs=1, patience="7")
    assert plugin.patience == 7
    assert trainer.args["patience"] == 7
    assert trainer.args["epochs"] == 1
    unknown = "unknown setting 'patiense'; did you mean 'patience'"
    with pytest.raises(hookline.SettingsError, match=unknown):
        trainer.fit(regression_batches(4, 4), epochs=1, patiense=2)
    with pytest.raises(hookline.SettingsError, match="'patience' expects int, got 'soon'"):
        trainer.fit(regression_batches(4, 4), epochs=1, patience="soon")


def test_listing_distinguishes_local_and_builtin_plugins():
    import hookline.settings as builtin_module  # any module inside the package counts

    manager = PluginManager()
    manager.register(builtin_module, "settings-module")

    class Local(Callback):
        def on_train_end(self):
            pass

    manager.register(Local())
    manager.add_callback("teardown", lambda run: None)
    sources = {info.name: (info.source, info.distribution) for info in manager.list_plugins()}
    assert sources["settings-module"] == ("built-in", "hookline")
    assert sources["Local"] == ("local", None)
    (callback,) = [name for name in sources if name.startswith("callback:teardown:")]
    assert sources[callback] == ("local", None)


@pytest.mark.parametrize("bad", [0.5, -1, True])
def test_fit_refuses_bad_engine_arguments(task, manager, bad):
    with pytest.raises(ValueError, match="setting 'epochs' must be an integer >= 0"):
        Trainer(task, manager=manager).fit(regression_batches(4, 4), epochs=bad)


def test_registering_reads_each_plugin_once_however_many_there_are(monkeypatch):
    """Registration reads a plugin's attributes statically (``inspect.getattr_static``, some
    microseconds each); rebuilding the dispatch table and checking state keys used to read
    every registered plugin's again at each registration, so that registering the defaults
    grew with the square of their number.  The lookups must grow as the plugins do."""
    import inspect

    def lookups(count: int) -> int:
        # a class per plugin: what one class parsed is remembered for its other instances
        plugins = [type(f"Plugin{count}x{index}", (Callback,), {
            "on_train_epoch_end": lambda self, trainer: None,
            "idle_hooks": lambda self: (),
            "state_dict": lambda self: {},
            "load_state_dict": lambda self, state: None,
            "state_key": f"key{index}",
        })() for index in range(count)]
        calls = 0
        original = inspect.getattr_static

        def counted(*args, **kwargs):
            nonlocal calls
            calls += 1
            return original(*args, **kwargs)

        manager = PluginManager()
        monkeypatch.setattr(inspect, "getattr_static", counted)
        try:
            for plugin in plugins:
                manager.register(plugin)
            manager.stateful_plugins()
        finally:
            monkeypatch.setattr(inspect, "getattr_static", original)
        return calls

    few, many = lookups(10), lookups(40)
    assert few > 0  # the count sees the lookups
    assert many <= 4.5 * few  # linear: 4x the plugins; the square would be 16x
