"""Built-in flags: the settings that turn built-in plugins on and off (``verbose=True``,
``plots=False``, ...), applied by :class:`hookline.Model` and the ``hookline`` command.

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
from hookline.settings import Options

__all__ = ["DEFAULT_FLAGS", "FLAGS_PLUGIN", "BuiltinFlags", "apply_flags"]

#: The name :func:`apply_flags` registers :class:`BuiltinFlags` under.
FLAGS_PLUGIN = "builtin-flags"


class BuiltinFlags(Callback):
    """Declares one true/false setting per built-in, whose default says whether it is on, so
    that the flags are checked, listed by ``hookline settings`` and recorded with the run's
    other settings."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    def hookline_add_options(self, options: Options) -> None:
        for builtin in BUILTINS:
            options.add(
                builtin.flag, self.manager.has_plugin(builtin.flag), help=builtin.help,
                owner="hookline",
            )


def apply_flags(manager: PluginManager, values: Mapping[str, Any]) -> None:
    """Register (true) or unregister (false) the built-in that each flag in ``values`` names;
    a flag given as text (``"false"``) is read like any other setting.  Also registers
    :class:`BuiltinFlags`, so that the flags are settings of the run.

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
    if not isinstance(manager.get_plugin(FLAGS_PLUGIN), BuiltinFlags):
        if manager.has_plugin(FLAGS_PLUGIN):
            manager.refuse(FLAGS_PLUGIN, "has a name hookline reserves; rename its entry point")
        manager.register(BuiltinFlags(manager), FLAGS_PLUGIN)
    flags = Options()
    for builtin in BUILTINS:
        flags.add(builtin.flag, False, help=builtin.help, owner="hookline")
    chosen = flags.resolve({name: value for name, value in values.items() if name in flags})
    for builtin in BUILTINS:
        if builtin.flag in values and chosen[builtin.flag] != manager.has_plugin(builtin.flag):
            if chosen[builtin.flag]:
                manager.register(builtin.create(), builtin.flag)
            else:
                manager.unregister(name=builtin.flag)


def with_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` over the flags of the built-ins that are on by default."""
    return {**DEFAULT_FLAGS, **settings}
