"""Plugin problems are reported at registration, with the fix, and leave nothing behind."""

from __future__ import annotations

import pytest

from hookline import Callback, PluginValidationError, hookimpl


def assert_nothing_left(manager, name):
    assert manager.get_plugin(name) is None
    assert not manager.is_blocked(name)
    assert manager.dispatch == {}


def test_unknown_decorated_hook_names_the_closest_hook(manager):
    class Typo:
        @hookimpl
        def on_trian_start(self, trainer):
            pass

    with pytest.raises(PluginValidationError) as caught:
        manager.register(Typo(), "typo")
    message = str(caught.value)
    assert "plugin 'typo'" in message
    assert "'on_trian_start' is not a hookline hook" in message
    assert "did you mean 'on_train_start'?" in message
    assert_nothing_left(manager, "typo")


def test_misspelt_callback_method_is_an_error_not_a_silent_no_op(manager):
    class Typo(Callback):
        def on_epoch_ned(self, trainer):
            pass

    with pytest.raises(PluginValidationError, match="did you mean 'on_epoch_end'"):
        manager.register(Typo())


def test_argument_the_hook_does_not_offer_lists_what_it_offers(manager):
    class WrongArgument(Callback):
        def on_train_batch_end(self, trainer, step):
            pass

    with pytest.raises(PluginValidationError) as caught:
        manager.register(WrongArgument())
    assert str(caught.value) == (
        "plugin 'WrongArgument', hook 'on_train_batch_end': argument 'step' is not offered by "
        "this hook; it offers: trainer, batch, batch_idx, loss"
    )
    assert_nothing_left(manager, "WrongArgument")


def test_argument_that_pluggy_would_never_fill_is_refused(manager):
    # (an argument with a default: tests/test_pluggy_defaults.py, by the installed pluggy)
    def on_log(metrics, *, step):
        pass

    refused = "argument 'step' is keyword-only, and pluggy never passes such an argument"
    with pytest.raises(PluginValidationError, match=refused):
        manager.add_callback("on_log", on_log)
    assert manager.list_plugins() == []
    assert manager.dispatch == {}


def test_optional_unknown_hooks_are_allowed(manager):
    class Forward:
        @hookimpl(optionalhook=True)
        def on_hook_of_a_future_version(self):
            pass

    assert manager.register(Forward()) == "Forward"


def test_pluggy_validation_failure_leaves_nothing_registered(manager):
    class NotAGenerator:
        @hookimpl(wrapper=True)
        def on_train_start(self, trainer):
            return None

    plugin = NotAGenerator()
    with pytest.raises(PluginValidationError, match="not a generator function"):
        manager.register(plugin, "wrapper")
    assert_nothing_left(manager, "wrapper")

    class Fixed:
        @hookimpl(wrapper=True)
        def on_train_start(self, trainer):
            return (yield)

    assert manager.register(Fixed(), "wrapper") == "wrapper"
    assert set(manager.dispatch) == {"on_train_start"}


def test_failed_callback_leaves_no_trace_and_the_same_function_can_be_fixed(manager):
    def on_end(trainer, extra):
        pass

    with pytest.raises(PluginValidationError, match="it offers: trainer"):
        manager.add_callback("on_train_end", on_end)
    assert manager.list_plugins() == []
    with pytest.raises(ValueError, match="is not a callback"):
        manager.remove_callback("on_train_end", on_end)
