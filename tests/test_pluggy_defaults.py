"""Argument defaults follow pluggy 1.7: a hook specification's argument with a default is
offered and passed when a call omits it; an implementation's argument with a default is filled
from the call; a hook gains an argument without breaking the plugins and callers before it."""

from __future__ import annotations

import pluggy
import pytest

import hookline
from hookline import Callback, PluginManager, PluginValidationError, hookimpl, hookspec
from hookline.manager import defaults as defaults_module
from hookline.manager import validation
from hookline.manager.compat import incompatibility, parse_version

needs_pluggy_defaults = pytest.mark.skipif(
    not defaults_module.pluggy_fills_defaults(),
    reason=f"pluggy {pluggy.__version__} does not fill argument defaults (pluggy 1.7 does)",
)


class WidgetHooksV1:
    """A hook as a first version of an API declares it."""

    @hookspec
    def on_widget(self, trainer):
        """A widget was made."""


class WidgetHooksV2:
    """The same hook, one minor version later: it gained ``widget``, with a default."""

    @hookspec
    def on_widget(self, trainer, widget=None):
        """A widget was made; ``widget`` is the widget (new in this version)."""


class OldPlugin:
    """Written for the first version."""

    @hookimpl
    def on_widget(self, trainer):
        return ("old", trainer)


class NewPlugin:
    """Written for the second version only."""

    @hookimpl
    def on_widget(self, trainer, widget):
        return ("new", trainer, widget)


class PortablePlugin:
    """Written for the second version, still running where the hook is the first one."""

    @hookimpl
    def on_widget(self, trainer, widget="own default"):
        return ("portable", trainer, widget)


def manager_with(specs: type) -> PluginManager:
    manager = PluginManager()
    manager.add_hookspecs(specs)
    return manager


@needs_pluggy_defaults
def test_an_implementation_may_take_a_specification_argument_that_has_a_default():
    manager = manager_with(WidgetHooksV2)
    assert manager.register(NewPlugin(), "new") == "new"
    assert manager.call("on_widget", trainer=1) == [("new", 1, None)]
    assert manager.call("on_widget", trainer=1, widget="w") == [("new", 1, "w")]


@needs_pluggy_defaults
def test_every_path_of_a_call_passes_the_specification_defaults():
    manager = manager_with(WidgetHooksV2)
    manager.register(NewPlugin(), "new")
    manager.register(PortablePlugin(), "portable")
    expected = [("portable", 1, None), ("new", 1, None)]
    assert manager.dispatch["on_widget"](trainer=1) == expected
    assert manager.hook.on_widget(trainer=1) == expected
    assert manager.call_every("on_widget", trainer=1) == expected


def test_an_argument_the_hook_does_not_offer_lists_every_argument_it_offers():
    manager = manager_with(WidgetHooksV2)

    class Wrong:
        @hookimpl
        def on_widget(self, trainer, gadget):
            pass

    offered = "trainer, widget" if defaults_module.pluggy_fills_defaults() else "trainer"
    with pytest.raises(PluginValidationError) as caught:
        manager.register(Wrong(), "wrong")
    assert str(caught.value) == (
        f"plugin 'wrong', hook 'on_widget': argument 'gadget' is not offered by this hook; "
        f"it offers: {offered}"
    )


def test_a_hook_that_offers_no_argument_says_so():
    class NoArguments:
        @hookspec
        def on_tick(self):
            """Nothing to pass."""

    class Asks:
        @hookimpl
        def on_tick(self, now):
            pass

    manager = manager_with(NoArguments)
    with pytest.raises(PluginValidationError, match=r"argument 'now' is not offered by this "
                                                    r"hook; it offers none$"):
        manager.register(Asks())


@needs_pluggy_defaults
def test_an_implementation_default_is_filled_from_the_call_and_kept_otherwise():
    manager = manager_with(WidgetHooksV1)

    class Plugin(Callback):
        def on_log(self, metrics, phase="unknown"):
            return phase

    manager.register(Plugin(), "plugin")
    assert manager.call("on_log", run=None, metrics={}, step=1, epoch=0, phase="val") == ["val"]
    # the hook does not offer ``widget`` here: the implementation keeps its own default
    manager.register(PortablePlugin(), "portable")
    assert manager.call("on_widget", trainer=1) == [("portable", 1, "own default")]
    assert manager.call("on_widget", trainer=1, widget="w") == [("portable", 1, "w")]


@needs_pluggy_defaults
def test_the_call_beats_the_specification_default_which_beats_the_implementation_default():
    manager = manager_with(WidgetHooksV2)
    manager.register(PortablePlugin(), "portable")
    assert manager.call("on_widget", trainer=1) == [("portable", 1, None)]
    assert manager.call("on_widget", trainer=1, widget="w") == [("portable", 1, "w")]


@needs_pluggy_defaults
def test_defaults_reach_implementations_that_hookline_wraps():
    """A ``disable`` plugin's functions are guarded, a profiled run's are timed, and the
    settings hooks are wrapped: each wrapper passes the arguments pluggy gives by name."""
    from hookline.manager.timing import ImplementationTimer

    class Observer(Callback):
        error_policy = "disable"

        def __init__(self):
            self.seen = []

        def on_widget(self, trainer, widget="own default"):
            self.seen.append(widget)

        def hookline_add_options(self, options=None):
            options.add("size", 1, help="a size")

        def hookline_configure(self, settings=None):
            self.seen.append(settings["size"])

    manager = manager_with(WidgetHooksV2)
    observer = Observer()
    manager.register(observer, "observer")
    timer = ImplementationTimer(manager, ["on_widget"])
    manager.call("on_widget", trainer=1, widget="w")
    manager.call("on_widget", trainer=1)
    timer.stop()
    manager.configure({"size": 3})
    assert observer.seen == ["w", None, 3]
    assert timer.times[("observer", "on_widget")].calls == 2


@needs_pluggy_defaults
def test_a_disabled_plugin_that_takes_its_phase_by_name_is_still_torn_down():
    class Fragile(Callback):
        error_policy = "disable"

        def __init__(self):
            self.closed = None

        def on_train_epoch_end(self, trainer=None):
            raise RuntimeError("broken")

        def teardown(self, run=None):
            self.closed = run

    manager = PluginManager()
    fragile = Fragile()
    manager.register(fragile, "fragile")
    with pytest.warns(hookline.PluginDisabledWarning, match="broken"):
        manager.call("on_train_epoch_end", trainer="the run")
    assert fragile.closed == "the run"
    assert manager.get_plugin("fragile") is None


@needs_pluggy_defaults
def test_pluggy_warns_for_an_argument_it_deprecates_as_it_does_on_its_own_manager():
    warning = DeprecationWarning("'old' is deprecated: take 'new'")

    class Specs:
        @hookspec(warn_on_impl_args={"old": warning})
        def on_change(self, old=None, new=None):
            """A hook whose argument ``old`` is on its way out."""

    class Plugin:
        @hookimpl
        def on_change(self, old=None):
            return old

    manager = manager_with(Specs)
    with pytest.warns(DeprecationWarning, match="'old' is deprecated") as records:
        manager.register(Plugin())
    (record,) = records
    assert record.message is warning
    assert record.lineno == Plugin.on_change.__code__.co_firstlineno


def test_a_keyword_only_argument_is_refused_pluggy_never_passes_it():
    def on_log(metrics, *, step):
        pass

    with pytest.raises(PluginValidationError,
                       match="argument 'step' is keyword-only, and pluggy never passes"):
        PluginManager().add_callback("on_log", on_log)


def test_where_pluggy_does_not_fill_defaults_an_implementation_default_is_refused(monkeypatch):
    """pluggy before 1.7 never fills an implementation's argument that has a default."""
    monkeypatch.setattr(validation, "pluggy_fills_defaults", lambda: False)

    def on_log(metrics, step=0):
        pass

    manager = PluginManager()
    with pytest.raises(PluginValidationError,
                       match=r"argument 'step' has a default value, and pluggy .* never fills"):
        manager.add_callback("on_log", on_log)
    assert manager.list_plugins() == []


def test_where_pluggy_does_not_fill_defaults_a_declared_hook_may_not_have_one(monkeypatch):
    monkeypatch.setattr(validation, "pluggy_fills_defaults", lambda: False)

    class Declares(Callback):
        hookspecs = WidgetHooksV2

    with pytest.raises(PluginValidationError,
                       match=r"'declares'.*'widget' a default value, which pluggy .* never"):
        PluginManager().register(Declares(), "declares")


@needs_pluggy_defaults
def test_a_plugin_may_declare_a_hook_whose_argument_has_a_default():
    class Declares(Callback):
        hookspecs = WidgetHooksV2

        def on_widget(self, trainer, widget):
            return ("declared", widget)

    manager = PluginManager()
    manager.register(Declares(), "declares")
    assert manager.call("on_widget", trainer=1) == [("declared", None)]


# -- the rule for a hook that gains an argument ----------------------------------------------


@needs_pluggy_defaults
def test_a_hook_gaining_an_argument_with_a_default_breaks_no_plugin_and_no_caller():
    before, after = manager_with(WidgetHooksV1), manager_with(WidgetHooksV2)
    for manager in (before, after):
        manager.register(OldPlugin(), "old")
        manager.register(PortablePlugin(), "portable")
    with pytest.raises(PluginValidationError, match="argument 'widget' is not offered"):
        before.register(NewPlugin(), "new")  # it needs the new version, and says so
    after.register(NewPlugin(), "new")
    # a caller written before the argument existed
    assert after.call("on_widget", trainer=1) == [
        ("new", 1, None), ("portable", 1, None), ("old", 1)
    ]
    # a caller of the new version
    assert after.call("on_widget", trainer=1, widget="w") == [
        ("new", 1, "w"), ("portable", 1, "w"), ("old", 1)
    ]
    assert before.call("on_widget", trainer=1) == [("portable", 1, "own default"), ("old", 1)]


def test_a_gained_argument_moves_the_hook_api_by_a_minor_step():
    major, minor = parse_version(hookline.HOOK_API_VERSION)
    gained = f"{major}.{minor + 1}"
    # plugins written for the version before keep working on the new one ...
    assert incompatibility(f">={major}.{minor},<{major + 1}", gained) is None
    # ... and a plugin that needs the argument says so, and is refused where it is missing
    assert incompatibility(f">={gained},<{major + 1}", gained) is None
    assert incompatibility(f">={gained},<{major + 1}", hookline.HOOK_API_VERSION) is not None


#: The catalog's hooks and the arguments without a default that each offers, at hook API
#: CATALOG_VERSION.  Within a major version a hook keeps these exactly; what it gains has a
#: default in its specification, and moves HOOK_API_VERSION by a minor step (then record it
#: here).  A hook removed, or an argument removed or gained without a default, is a new major.
CATALOG_VERSION = "1.1"
CATALOG = {
    "hookline_add_options": ("options",),
    "hookline_configure": ("settings",),
    "on_after_backward": ("trainer",),
    "on_before_backward": ("trainer", "loss"),
    "on_before_optimizer_step": ("trainer",),
    "on_before_zero_grad": ("trainer",),
    "on_exception": ("run", "exception"),
    "on_export_end": ("exporter", "artifact"),
    "on_export_start": ("exporter", "format"),
    "on_fit_epoch_end": ("trainer", "metrics"),
    "on_load_checkpoint": ("trainer", "checkpoint"),
    "on_log": ("run", "metrics", "step", "epoch", "phase"),
    "on_model_save": ("trainer", "path"),
    "on_params_update": ("trainer",),
    "on_plugin_registered": ("plugin", "manager"),
    "on_predict_batch_end": ("predictor", "outputs", "batch", "batch_idx"),
    "on_predict_batch_start": ("predictor", "batch", "batch_idx"),
    "on_predict_end": ("predictor",),
    "on_predict_postprocess_end": ("predictor", "outputs", "batch", "batch_idx"),
    "on_predict_start": ("predictor",),
    "on_pretrain_routine_end": ("trainer",),
    "on_pretrain_routine_start": ("trainer",),
    "on_save_checkpoint": ("trainer", "checkpoint"),
    "on_train_batch_end": ("trainer", "batch", "batch_idx", "loss"),
    "on_train_batch_start": ("trainer", "batch", "batch_idx"),
    "on_train_end": ("trainer",),
    "on_train_epoch_end": ("trainer",),
    "on_train_epoch_start": ("trainer",),
    "on_train_start": ("trainer",),
    "on_val_batch_end": ("validator", "batch", "batch_idx", "outputs"),
    "on_val_batch_start": ("validator", "batch", "batch_idx"),
    "on_val_end": ("validator", "metrics"),
    "on_val_start": ("validator",),
    "teardown": ("run",),
}


def test_the_catalog_evolves_by_the_rule():
    manager = PluginManager()
    version = parse_version(hookline.HOOK_API_VERSION)
    recorded = parse_version(CATALOG_VERSION)
    if version[0] != recorded[0]:
        pytest.skip("a new major hook API: record its catalog above")
    grown = False
    for name, required in CATALOG.items():
        assert name in manager.hook_names, (
            f"hook {name!r} was removed: that needs a new major HOOK_API_VERSION"
        )
        spec = getattr(manager.hook, name).spec
        assert tuple(spec.argnames) == required, (
            f"hook {name!r} now requires {tuple(spec.argnames)}, not {required}: an argument a "
            "hook gains takes a default in its specification (removing one is a new major)"
        )
        grown = grown or bool(spec.kwargnames)
    grown = grown or bool(manager.hook_names - set(CATALOG))
    if grown:
        assert version > recorded, (
            f"the catalog grew since hook API {CATALOG_VERSION}: move HOOK_API_VERSION by a "
            "minor step"
        )
    else:
        assert version == recorded, "HOOK_API_VERSION moved: record its catalog above"


def test_the_probe_sees_the_installed_pluggy():
    """pluggy 1.7 fills defaults; before it, pluggy does not (and its tests skip above)."""
    major, minor = (int(part) for part in pluggy.__version__.split(".")[:2])
    assert defaults_module.pluggy_fills_defaults() == ((major, minor) >= (1, 7))
