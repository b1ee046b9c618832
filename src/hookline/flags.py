"""Plugin flags: the settings that turn plugins on and off, applied by :class:`hookline.Model`
and the ``hookline`` command.  Each built-in has one (``verbose=True``, ``plots=False``, ...),
and so does each installed plugin, under its entry point's name (``gradnorm=False``): on by
default, since installed means discovered.

The engine and the plugin manager know no built-in plugin: a bare :class:`hookline.Trainer`
runs exactly the plugins it was given.  The table of built-ins is
:data:`hookline.plugins.BUILTINS`; a built-in's module is imported only when its flag turns it
on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hookline.manager import Callback, PluginManager
from hookline.manager.listing import is_builtin
from hookline.plugins import BUILTINS, DEFAULT_FLAGS
from hookline.settings import Options, SettingsError

__all__ = ["DEFAULT_FLAGS", "FLAGS_PLUGIN", "PluginFlags", "apply_flags", "apply_flags_given"]

#: The name :func:`apply_flags` registers :class:`PluginFlags` under.
FLAGS_PLUGIN = "plugin-flags"


class PluginFlags(Callback):
    """Declares one true/false setting per built-in and per installed plugin, whose default
    says whether it is on, so that the flags are checked, listed by ``hookline settings`` and
    recorded with the run's other settings.  Keeps the installed plugins a flag turned off, to
    register them again when a flag turns them on."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        #: Installed plugins turned off by their flag, by name.
        self.switched_off: dict[str, Any] = {}

    def hookline_add_options(self, options: Options) -> None:
        for builtin in BUILTINS:
            options.add(
                builtin.flag, self.manager.has_plugin(builtin.flag), help=builtin.help,
                owner="hookline",
            )
        for name, distribution in self.manager.entry_point_plugins().items():
            options.add(
                name, self.manager.has_plugin(name), owner=distribution,
                help=f"the installed plugin {name!r}: on (true) or off",
            )


def apply_flags(manager: PluginManager, values: Mapping[str, Any]) -> None:
    """Register (true) or unregister (false) the built-in or installed plugin that each flag in
    ``values`` names; a flag given as text (``"false"``) is read like any other setting.  An
    installed plugin whose flag is not in ``values`` is on.  Also registers
    :class:`PluginFlags`, so that the flags are settings of the run.

    :raises hookline.SettingsError: for a flag whose value is not a boolean.
    """
    for builtin in BUILTINS:  # an installed plugin may not pass itself off as a built-in
        plugin = manager.get_plugin(builtin.flag)
        if plugin is not None and not is_builtin(plugin):
            manager.refuse(
                builtin.flag,
                f"has the name of hookline's built-in {builtin.flag!r} plugin "
                f"({builtin.target}); rename its entry point",
            )
    flags_plugin = manager.get_plugin(FLAGS_PLUGIN)
    if not isinstance(flags_plugin, PluginFlags):
        if flags_plugin is not None:
            manager.refuse(FLAGS_PLUGIN, "has a name hookline reserves; rename its entry point")
        flags_plugin = PluginFlags(manager)
        manager.register(flags_plugin, FLAGS_PLUGIN)
    installed = manager.entry_point_plugins()
    flags = Options()
    for name in [builtin.flag for builtin in BUILTINS] + list(installed):
        flags.add(name, False, help="on or off", owner="hookline")
    chosen = flags.resolve({name: value for name, value in values.items() if name in flags})
    for builtin in BUILTINS:
        if builtin.flag in values and chosen[builtin.flag] != manager.has_plugin(builtin.flag):
            if chosen[builtin.flag]:
                manager.register(builtin.create(), builtin.flag)
            else:
                manager.unregister(name=builtin.flag)
    switched_off = flags_plugin.switched_off
    for name in installed:
        wanted = chosen[name] if name in values else True
        if wanted and name in switched_off:
            manager.register(switched_off.pop(name), name)
        elif not wanted and manager.has_plugin(name):
            switched_off[name] = manager.unregister(name=name)


def apply_flags_given(
    manager: PluginManager, values: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, bool]:
    """:func:`apply_flags` for ``values``, then for the built-ins that a setting the user gave
    (in ``given``) asks for: asking for ``patience=3`` asks for early stopping,
    ``profile_memory=True`` for the profile.  Returns the flags so turned on, for the caller
    to add to its settings."""
    apply_flags(manager, values)
    implied = implied_flags(manager, given)
    if implied:
        apply_flags(manager, {**values, **implied})
    return implied


def implied_flags(manager: PluginManager, given: Mapping[str, Any]) -> dict[str, bool]:
    """The built-ins that are off and that a setting in ``given`` belongs to alone.  A setting
    several built-ins declare (``monitor``) turns none of them on, nor does one given as false;
    a flag given explicitly is left as it is, and a setting nobody declares is left for the
    settings to refuse.

    :raises SettingsError: for a setting whose built-ins ``given`` turns off with their flags
        (``patience=3 early_stopping=false``): the setting would do nothing.
    """
    known = manager.options()
    unknown = [name for name in given if name not in known]
    implied: dict[str, bool] = {}
    if not unknown:
        return implied
    declared: dict[str, list[str]] = {}  # setting -> the flags of the built-ins declaring it
    for builtin in BUILTINS:
        if manager.has_plugin(builtin.flag):
            continue
        options, declare = Options(), getattr(builtin.create(), "hookline_add_options", None)
        if declare is not None:
            declare(options)
        for option in options:
            declared.setdefault(option.name, []).append(builtin.flag)
    for name in unknown:
        owners = declared.get(name, [])
        turned_off = [flag for flag in owners if flag in given and _false(given[flag])]
        if owners and turned_off == owners:
            raise SettingsError(
                f"setting {name!r} belongs to {' and '.join(owners)}, which "
                f"{', '.join(f'{flag}=false' for flag in owners)} turns off"
            )
        # a setting given as false asks for nothing: profile_memory=false is no profile
        if _false(given[name]):
            continue
        free = [flag for flag in owners if flag not in given]
        if len(free) == 1:
            implied[free[0]] = True
    return implied


def _false(value: Any) -> bool:
    return value is False or str(value).lower() == "false"


def with_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` over the flags of the built-ins that are on by default."""
    return {**DEFAULT_FLAGS, **settings}
