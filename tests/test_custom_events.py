"""Custom events: hooks a plugin declares and fires are dispatched to other plugins, validated
at registration like the catalog's, and listed by ``hookline hooks``; renamed hooks keep
working under their old names with a warning."""

from __future__ import annotations

from typing import ClassVar

import pytest

import hookline
from hookline import PluginManager, PluginValidationError, Trainer
from hookline.testing import LinearRegressionTask, make_batches
from tests.installed import install


class GanSpecs:
    """The events of a GAN training plugin."""

    @hookline.hookspec
    def on_discriminator_step(self, trainer, loss):
        """The discriminator took a step; ``loss`` is its loss (on the device)."""


class GanTraining(hookline.Callback):
    """Declares the GAN events and fires one after each training batch."""

    hookspecs = GanSpecs

    def on_train_batch_end(self, trainer):
        trainer.call("on_discriminator_step", trainer=trainer, loss=trainer.loss)


class DiscriminatorLog(hookline.Callback):
    """Listens to the GAN plugin's event like any other hook."""

    def __init__(self):
        self.seen = []

    def on_discriminator_step(self, trainer, loss):
        self.seen.append((trainer.global_step, loss))


def batches():
    rows = [[float(i), 1.0] for i in range(8)]
    return make_batches(rows, [sum(row) for row in rows], 2)


def test_a_custom_event_fired_by_one_plugin_reaches_another(manager):
    manager.register(GanTraining(), "gan")
    listener = DiscriminatorLog()
    manager.register(listener, "discriminator-log")
    Trainer(LinearRegressionTask(2), manager=manager).fit(batches(), epochs=2)
    assert [step for step, _ in listener.seen] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(isinstance(loss, float) for _, loss in listener.seen)
    assert "on_discriminator_step" in manager.hook_names
    assert manager.custom_hooks == {"on_discriminator_step": "gan"}


def test_an_implementation_of_a_custom_event_is_validated_like_a_catalog_hook(manager):
    manager.register(GanTraining(), "gan")

    class WrongArgument(hookline.Callback):
        def on_discriminator_step(self, generator):
            pass

    with pytest.raises(PluginValidationError, match=r"'generator' is not offered.*trainer, loss"):
        manager.register(WrongArgument())

    class Misspelt(hookline.Callback):
        def on_discriminator_stop(self, loss):
            pass

    with pytest.raises(PluginValidationError, match="did you mean 'on_discriminator_step'"):
        manager.register(Misspelt())


def test_a_listener_registered_before_the_declaring_plugin_needs_optionalhook(manager):
    with pytest.raises(PluginValidationError, match="not a hookline hook"):
        manager.register(DiscriminatorLog())

    class Early:
        def __init__(self):
            self.calls = 0

        @hookline.hookimpl(optionalhook=True)
        def on_discriminator_step(self, loss):
            self.calls += 1

    early = Early()
    manager.register(early, "early")
    manager.register(GanTraining(), "gan")
    manager.call("on_discriminator_step", trainer=None, loss=1.0)
    assert early.calls == 1


def test_bad_declarations_are_refused_naming_the_plugin(manager):
    class Clash:
        @hookline.hookspec
        def on_train_end(self, trainer):
            """Already in the catalog."""

    class Declares(hookline.Callback):
        def __init__(self, specs):
            self.hookspecs = specs

    with pytest.raises(PluginValidationError, match=r"'clash'.*'on_train_end'.*catalog"):
        manager.register(Declares(Clash), "clash")
    # a declared argument with a default: tests/test_pluggy_defaults.py (allowed from pluggy 1.7)
    with pytest.raises(PluginValidationError, match=r"no function marked @hookline\.hookspec"):
        manager.register(Declares(object), "empty")


def test_a_second_instance_of_the_declaring_plugin_adds_nothing_twice(manager):
    manager.register(GanTraining(), "gan")
    manager.register(GanTraining(), "gan-2")
    assert manager.custom_hooks == {"on_discriminator_step": "gan"}


PLUGIN_SOURCE = '''
import hookline

class TrackerSpecs:
    @hookline.hookspec
    def on_artifact_uploaded(self, uri):
        """A file of the run reached the tracker at ``uri``."""

class Tracker(hookline.Callback):
    hookspecs = TrackerSpecs
'''


def test_hookline_hooks_lists_the_hooks_installed_plugins_declare(monkeypatch, tmp_path,
                                                                  hookline_cli):
    install(monkeypatch, tmp_path / "site", "hookline-tracker", "tracker_plugin",
            PLUGIN_SOURCE, {"tracker": "tracker_plugin:Tracker"})
    result = hookline_cli("hooks")
    assert result.exit_code == 0, result.stderr
    listed = result.stdout.split("== Declared by plugins ==")[1]
    assert "on_artifact_uploaded(uri)\n    (declared by plugin 'tracker')" in listed
    assert "A file of the run reached the tracker" in listed
    assert "on_artifact_uploaded" not in hookline_cli("hooks", "--no-plugins").stdout


class RenamedSpecs:
    """Version 2 of a plugin's events: ``on_disc_step`` became ``on_discriminator_step``."""

    RENAMED: ClassVar[dict[str, str]] = {"on_disc_step": "on_discriminator_step"}

    @hookline.hookspec
    def on_discriminator_step(self, loss):
        """The discriminator took a step."""


def test_a_renamed_hook_works_under_its_old_name_with_a_warning_naming_the_new(manager):
    class Declares(hookline.Callback):
        hookspecs = RenamedSpecs

    class OldListener(hookline.Callback):
        def __init__(self):
            self.losses = []

        def on_disc_step(self, loss):
            self.losses.append(loss)

    manager.register(Declares(), "gan")
    listener = OldListener()
    with pytest.warns(hookline.HookDeprecationWarning,
                      match="'on_disc_step', which was renamed 'on_discriminator_step'"):
        manager.register(listener, "old")
    manager.call("on_discriminator_step", loss=0.5)
    manager.call("on_disc_step", loss=0.25)  # a caller still using the old name
    assert listener.losses == [0.5, 0.25]


def test_a_renamed_catalog_hook_keeps_working(monkeypatch):
    monkeypatch.setattr(hookline.hookspecs, "RENAMED", {"on_epoch_finished": "on_fit_epoch_end"})
    manager = PluginManager()

    class Old(hookline.Callback):
        def __init__(self):
            self.epochs = []

        def on_epoch_finished(self, trainer):
            self.epochs.append(trainer.epoch)

    old = Old()
    with pytest.warns(hookline.HookDeprecationWarning, match="renamed 'on_fit_epoch_end'"):
        manager.register(old)
    Trainer(LinearRegressionTask(2), manager=manager).fit(batches(), epochs=2)
    assert old.epochs == [0, 1]
