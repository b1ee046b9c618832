"""The documented plugin surface: state keys, the owner of a setting, the error type for a bad
value, the hook-API range a plugin declares, and the on/off flag of an installed plugin."""

from __future__ import annotations

import warnings

import pytest

import hookline
from hookline import PluginLoadError, PluginManager, PluginValidationError, Trainer
from hookline.testing import LinearRegressionTask, make_batches
from tests.installed import install


def batches():
    return make_batches([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [1.0, 2.0, 3.0], 1)


class Counter(hookline.Callback):
    """Counts epochs; its state travels in checkpoints under ``state_key``."""

    def __init__(self, key=None):
        if key is not None:
            self.state_key = key
        self.epochs = 0

    def on_train_epoch_end(self):
        self.epochs += 1

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        self.epochs = state["epochs"]


def test_state_is_keyed_by_state_key_whatever_the_registration_order(manager):
    manager.register(Counter("train-counter"))
    manager.register(Counter("val-counter"))
    trainer = Trainer(LinearRegressionTask(2), manager=manager)
    trainer.fit(batches(), epochs=2)
    manager.get_plugin("Counter").epochs = 5  # tell them apart
    checkpoint = trainer.checkpoint_state()
    assert set(checkpoint["plugins"]) == {"train-counter", "val-counter"}
    restored = PluginManager()
    second, first = Counter("val-counter"), Counter("train-counter")
    restored.register(second)  # the other order: names Counter and Counter-2 swap
    restored.register(first)
    Trainer(LinearRegressionTask(2), manager=restored).load_checkpoint_state(checkpoint)
    assert (first.epochs, second.epochs) == (5, 2)


def test_a_duplicate_state_key_is_refused_at_registration(manager):
    manager.register(Counter("counter"), "a")
    with pytest.raises(PluginValidationError, match=r"'b'.*'counter'.*own state_key"):
        manager.register(Counter("counter"), "b")
    with pytest.raises(PluginValidationError, match=r"'counter'.*'counter'.*own state_key"):
        manager.register(Counter(), "counter")  # without state_key, its name is its key
    manager.register(Counter("counter-2"), "b")
    assert set(manager.stateful_plugins()) == {"counter", "counter-2"}


def test_a_setting_without_owner_belongs_to_the_plugin_that_declares_it(manager):
    class Declares(hookline.Callback):
        def hookline_add_options(self, options):
            options.add("gradnorm_every", 10, help="report every N steps")
            options.add("gradnorm_tag", "", help="a tag", owner="someone else")

    manager.register(Declares(), "gradnorm")
    owners = {option.name: option.owner for option in manager.options()}
    assert owners["gradnorm_every"] == "gradnorm"
    assert owners["gradnorm_tag"] == "someone else"


def test_a_setting_with_choices_refuses_the_others_naming_them():
    options = hookline.Options()
    options.add("unit", "s", choices=("s", "ms"), help="unit")
    options.add("every", 1, choices=(1, 2, 5), help="every N")
    assert dict(options.resolve({"unit": "ms", "every": "5"})) == {"unit": "ms", "every": 5}
    with pytest.raises(hookline.SettingsError,
                       match=r"^setting 'every' must be one of 1, 2, 5; got 3$"):
        options.resolve({"every": "3"})
    with pytest.raises(hookline.SettingsError, match="its default 'h' is not one of its choices"):
        options.add("scale", "h", choices=("s", "ms"), help="unit")


def test_a_value_error_in_configure_is_a_settings_error_naming_the_plugin(manager):
    class Strict(hookline.Callback):
        def hookline_add_options(self, options):
            options.add("gradnorm_every", 10, help="report every N steps")

        def hookline_configure(self, settings):
            if settings["gradnorm_every"] < 1:
                raise ValueError(f"gradnorm_every must be >= 1, got {settings['gradnorm_every']}")

    manager.register(Strict(), "gradnorm")
    with pytest.raises(hookline.SettingsError,
                       match="plugin 'gradnorm' refused its settings: gradnorm_every must be"):
        manager.configure({"gradnorm_every": 0})


@pytest.mark.parametrize(
    ("declared", "fits"),
    [(None, True), (">=1,<2", True), (">=1.1", True), ("==1.1", True), ("<1.1", False),
     (">=2", False), ("!=1.1", False)],
)
def test_a_plugin_outside_its_hook_api_range_is_refused(manager, declared, fits):
    plugin = type("Ranged", (hookline.Callback,), {"hookline_api": declared})()
    if fits:
        manager.register(plugin)
        return
    with pytest.raises(PluginValidationError,
                       match=f"'Ranged' supports hook API {declared}.*hook API 1.1"):
        manager.register(plugin)


@pytest.mark.parametrize("declared", ["1.x", "", 2])
def test_a_malformed_range_is_refused(manager, declared):
    plugin = type("Ranged", (hookline.Callback,), {"hookline_api": declared})()
    with pytest.raises(PluginValidationError, match="hookline_api"):
        manager.register(plugin)


INSTALLED = '''
import hookline

class Future(hookline.Callback):
    hookline_api = ">=2"

class Steps(hookline.Callback):
    """Reports the optimizer steps of the run."""

    def on_fit_epoch_end(self, trainer, metrics):
        metrics["steps"] = float(trainer.global_step)
'''


def test_an_installed_plugin_for_another_hook_api_is_skipped_in_one_line(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path, "hookline-future", "future_plugin", INSTALLED,
            {"future": "future_plugin:Future"}, version="3.0")
    manager = PluginManager()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "future" not in manager.load_entrypoint_plugins()
    (warning,) = [str(w.message) for w in caught if "plugin 'future'" in str(w.message)]
    assert "\n" not in warning
    assert "hookline-future 3.0" in warning
    assert "supports hook API >=2, and this hookline has hook API 1.1" in warning
    with pytest.raises(PluginLoadError, match="supports hook API >=2"):
        PluginManager().load_entrypoint_plugins(strict=True)
    # asked for by name, it is an error in any mode
    with pytest.raises(PluginLoadError, match="supports hook API >=2"):
        PluginManager().load_entrypoint_plugins(only=["future"])


def test_every_installed_plugin_has_an_on_off_flag(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path, "hookline-steps", "steps_plugin", INSTALLED,
            {"steps": "steps_plugin:Steps"})
    manager = PluginManager()
    manager.load_entrypoint_plugins(only=["steps"])
    model = hookline.Model(LinearRegressionTask(2), manager=manager)
    flags = {"verbose": False, "save": False, "checkpoint": False, "summary": False,
             "progress": False, "plots": False}
    assert "steps" not in model.train(batches(), epochs=1, steps=False, **flags)
    assert manager.get_plugin("steps") is None
    assert model.train(batches(), epochs=1, **flags)["steps"] == 3.0  # on again by default
    (flag,) = [option for option in manager.options() if option.name == "steps"]
    assert (flag.default, flag.type, flag.owner) == (True, bool, "hookline-steps 1.0")
    with pytest.raises(hookline.SettingsError, match="setting 'steps' expects bool"):
        model.train(batches(), epochs=1, steps="sometimes", **flags)
