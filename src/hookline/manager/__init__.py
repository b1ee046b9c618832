"""The plugin manager layer: pluggy's manager with validation, callbacks, entry points, listing
and a dispatch table.  It knows the hook catalog (:mod:`hookline.hookspecs`) and nothing above
it: no engine, no backend and no built-in plugin.

* :mod:`~hookline.manager.callback`: :class:`Callback` and the ``@hookimpl`` marker.
* :mod:`~hookline.manager.validation`: checks every implementation at registration.
* :mod:`~hookline.manager.defaults`: argument defaults, as the installed pluggy treats them.
* :mod:`~hookline.manager.attributes`: reads a plugin's attributes statically, as pluggy does.
* :mod:`~hookline.manager.dispatch`: the table of hooks that are due a call.
* :mod:`~hookline.manager.entry_points`: discovery of installed plugins (group ``hookline``).
* :mod:`~hookline.manager.listing`: what ``hookline plugins`` reports.
* :mod:`~hookline.manager.faults`: what happens when a plugin raises (``raise`` or ``disable``).
* :mod:`~hookline.manager.filters`: event filters (``@every(steps=N)``, ``@once(step=N)``).
* :mod:`~hookline.manager.timing`: timing plugins' implementations (profile, slow plugins).
* :mod:`~hookline.manager.compat`: the hook-API range a plugin declares; renamed hooks.
* :mod:`~hookline.manager.plugin_manager`: :class:`PluginManager`, which ties them together.
"""

from hookline.hookspecs import ALIASES, HOOK_API_VERSION, hookspec
from hookline.manager.callback import Callback, hookimpl
from hookline.manager.compat import HookDeprecationWarning
from hookline.manager.errors import (
    PluginLoadError,
    PluginLoadWarning,
    PluginValidationError,
    UnknownHookError,
)
from hookline.manager.faults import PluginDisabledWarning, PluginFailure
from hookline.manager.filters import every, once
from hookline.manager.listing import PluginInfo
from hookline.manager.plugin_manager import PluginManager, default_manager

__all__ = [
    "ALIASES",
    "HOOK_API_VERSION",
    "Callback",
    "HookDeprecationWarning",
    "PluginDisabledWarning",
    "PluginFailure",
    "PluginInfo",
    "PluginLoadError",
    "PluginLoadWarning",
    "PluginManager",
    "PluginValidationError",
    "UnknownHookError",
    "default_manager",
    "every",
    "hookimpl",
    "hookspec",
    "once",
]
