"""hookline reads a plugin's attributes statically, as pluggy finds hooks, and its errors at
registration name the hook they are about."""

from __future__ import annotations

import functools

import pytest

import hookline
from hookline import Callback, PluginManager, PluginValidationError, hookimpl, hookspec
from hookline.manager.attributes import static_method, static_value
from hookline.manager.filters import EventFilter, filter_of


class AnswersEverything:
    """A plugin whose ``__getattr__`` answers every name (pluggy's own test of this)."""

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return 42

    @hookimpl
    def on_train_end(self, trainer):
        return "ran"


def test_a_plugin_whose_getattr_answers_every_name_registers_with_no_settings():
    manager = PluginManager()
    plugin = AnswersEverything()
    assert manager.register(plugin, "dynamic") == "dynamic"
    assert manager.error_policy("dynamic") == "raise"
    assert manager.stateful_plugins() == {}
    assert manager.custom_hooks == {}
    manager.set_rank(1)  # not rank-zero-only: its hooks still run on other ranks
    assert manager.call("on_train_end", trainer=None) == ["ran"]


@pytest.mark.parametrize("attribute", ["hookline_api", "hookspecs", "state_key", "error_policy",
                                       "rank_zero_only"])
@pytest.mark.parametrize("descriptor", [property, functools.cached_property])
def test_a_setting_behind_a_descriptor_is_refused_without_running_it(attribute, descriptor):
    def compute(self):
        raise AssertionError("hookline ran the plugin's code")

    plugin = type("Computed", (Callback,), {attribute: descriptor(compute)})()
    manager = PluginManager()
    with pytest.raises(PluginValidationError) as caught:
        manager.register(plugin, "computed")
    assert str(caught.value) == (
        f"plugin 'computed': its {attribute!r} is a {descriptor.__name__}, which hookline does "
        "not run (it reads a plugin's attributes statically, as pluggy finds hooks); make it a "
        "plain attribute, set on the class or in __init__"
    )
    assert manager.get_plugin("computed") is None


def test_settings_held_by_the_instance_its_slots_or_its_class_are_read():
    class Slotted:
        __slots__ = ("state_key",)
        error_policy = "disable"
        rank_zero_only = True

        def __init__(self):
            self.state_key = "slotted"

        def state_dict(self):
            return {"n": 1}

    class Held:
        def __init__(self):
            self.state_key = "held"
            self.error_policy = "disable"

        @staticmethod
        def state_dict():
            return {"n": 2}

    manager = PluginManager()
    manager.register(Slotted(), "slotted")
    manager.register(Held(), "held")
    stateful = manager.stateful_plugins()
    assert sorted(stateful) == ["held", "slotted"]
    assert [stateful[key].state_dict() for key in ("slotted", "held")] == [{"n": 1}, {"n": 2}]
    assert manager.error_policy("slotted") == manager.error_policy("held") == "disable"
    assert static_value(Slotted(), "rank_zero_only") is True


def test_a_class_setting_changed_after_registration_counts_once_the_run_is_configured():
    """A class's settings are read once per class when plugins register (a static lookup is
    slow), and afresh when a run is configured."""

    class Quiet:
        error_policy = "raise"

    manager = PluginManager()
    first = Quiet()
    manager.register(first, "first")
    Quiet.error_policy = "disable"
    manager.register(Quiet(), "second")  # the class as it was read when the first registered
    manager.configure()
    assert manager.error_policy("first") == manager.error_policy("second") == "disable"
    assert static_value(first, "error_policy") == "disable"


def test_state_methods_are_bound_as_getattr_binds_them():
    class Plugin:
        def __init__(self):
            self.own = lambda: "own"  # held by the instance: not bound

        def method(self):
            return self

        @classmethod
        def klass(cls):
            return cls

        @staticmethod
        def static():
            return "static"

        @property
        def computed(self):
            raise AssertionError("a property is never run")

        def __getattr__(self, name):
            return lambda: "dynamic"

    plugin = Plugin()
    assert static_method(plugin, "method")() is plugin
    assert static_method(plugin, "klass")() is Plugin
    assert static_method(plugin, "static")() == "static"
    assert static_method(plugin, "own")() == "own"
    assert static_method(plugin, "computed") is None
    assert static_method(plugin, "dynamic") is None
    assert static_method(Plugin, "method") is Plugin.method  # a class plugin: not bound


def test_idle_hooks_and_rank_zero_only_behind_getattr_do_not_count():
    class Idle(AnswersEverything):
        pass

    class RankZero(Callback):
        rank_zero_only = True

        @staticmethod
        def idle_hooks():
            return ("on_train_start",)

        def on_train_start(self, trainer):
            pass

        def on_train_end(self, trainer):
            pass

    manager = PluginManager()
    manager.register(Idle(), "idle")
    manager.register(RankZero(), "rank-zero")
    assert set(manager.dispatch) == {"on_train_end"}
    manager.set_rank(1)
    assert [impl.plugin_name for impl in manager.dispatch["on_train_end"].impls] == ["idle"]


def test_an_event_filter_is_read_statically():
    class Dynamic:
        def __getattr__(self, name):
            return EventFilter(every_steps=2)

        def __call__(self, trainer):
            pass

    class Plugin(Callback):
        @hookline.every(steps=3)
        def on_train_batch_end(self, trainer):
            pass

    assert filter_of(Dynamic()) is None
    assert filter_of(Plugin().on_train_batch_end) == EventFilter(every_steps=3)


def test_a_hook_behind_a_property_is_never_run():
    class Plugin(Callback):
        @property
        def on_train_end(self):
            raise AssertionError("a property is never run")

    manager = PluginManager()
    with pytest.raises(PluginValidationError, match="'on_train_end' is no function or method"):
        manager.register(Plugin(), "plugin")  # a Callback's on_... must be a hook


# -- errors name the hook they are about --------------------------------------------------


def test_an_unknown_hook_named_through_specname_names_both():
    class Plugin:
        @hookimpl(specname="on_train_edn")
        def on_train_end(self, trainer):
            pass

    with pytest.raises(PluginValidationError) as caught:
        PluginManager().register(Plugin(), "plugin")
    assert str(caught.value) == (
        "plugin 'plugin': 'on_train_end' implements 'on_train_edn', which is not a hookline "
        "hook; did you mean 'on_train_end'?"
    )


class LateSpecs:
    @hookspec
    def on_late(self, arg):
        """A hook that a plugin adds while it hears of earlier registrations."""


def with_history() -> PluginManager:
    manager = PluginManager()
    manager.register(Callback(), "first")  # on_plugin_registered now has a call to replay
    return manager


def test_a_hook_added_by_a_historic_replay_counts_as_pluggy_says():
    class Adds:
        @hookimpl
        def on_plugin_registered(self, manager):
            if "on_late" not in manager.hook_names:
                manager.add_hookspecs(LateSpecs)

        @hookimpl
        def on_late(self, arg):
            return arg

    manager = with_history()
    assert manager.register(Adds(), "adds") == "adds"
    assert manager.call("on_late", arg=1) == [1]


def test_an_implementation_checked_after_a_historic_replay_names_its_hook():
    class Adds:
        @hookimpl
        def on_plugin_registered(self, manager):
            if "on_late" not in manager.hook_names:
                manager.add_hookspecs(LateSpecs)

        @hookimpl
        def on_late(self, qlwkje):
            pass

    manager = with_history()
    with pytest.raises(PluginValidationError, match=r"(?s)'on_late'.*'qlwkje'"):
        manager.register(Adds(), "adds")
    assert manager.get_plugin("adds") is None
    assert manager.hook.on_late.get_hookimpls() == []


def test_a_hook_still_unknown_after_a_historic_replay_is_refused_leaving_nothing():
    class Replays:
        def __init__(self):
            self.heard = []

        @hookimpl
        def on_plugin_registered(self, plugin):
            self.heard.append(plugin)

        @hookimpl
        def on_never_added(self):
            pass

    manager = with_history()
    plugin = Replays()
    with pytest.raises(PluginValidationError) as caught:
        manager.register(plugin, "replays")
    assert str(caught.value).startswith(
        "plugin 'replays': 'on_never_added' is not a hookline hook;"
    )
    assert manager.get_plugin("replays") is None
    assert not hasattr(manager.hook, "on_never_added")
    assert manager.register(Callback(), "next") == "next"
    assert len(plugin.heard) == 1  # the replay ran (as pluggy's does), nothing after it
