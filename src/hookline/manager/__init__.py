"""The plugin manager layer: pluggy's manager with validation, callbacks, entry points, listing
and a dispatch table.  It knows the hook catalog (:mod:`hookline.hookspecs`) and nothing above
it: no engine, no backend and no built-in plugin.

* :mod:`~hookline.manager.callback`: :class:`Callback` and the ``@hookimpl`` marker.
* :mod:`~hookline.manager.validation`: checks every implementation at registration.
* :mod:`~hookline.manager.dispatch`: the table of hooks that are due a call.
* :mod:`~hookline.manager.entry_points`: discovery of installed plugins (group ``hookline``).
* :mod:`~hookline.manager.listing`: what ``hookline plugins`` reports.
* :mod:`~hookline.manager.faults`: what happens when a plugin raises (``raise`` or ``disable``).
* :mod:`~hookline.manager.plugin_manager`: :class:`PluginManager`, which ties them together.
"""

from hookline.hookspecs import ALIASES
from hookline.manager.callback import Callback, hookimpl
from hookline.manager.errors import (
    PluginLoadError,
    PluginLoadWarning,
    PluginValidationError,
    UnknownHookError,
)
from hookline.manager.faults import PluginDisabledWarning, PluginFailure
from hookline.manager.listing import PluginInfo
from hookline.manager.plugin_manager import PluginManager, default_manager

__all__ = [
    "ALIASES",
    "Callback",
    "PluginDisabledWarning",
    "PluginFailure",
    "PluginInfo",
    "PluginLoadError",
    "PluginLoadWarning",
    "PluginManager",
    "PluginValidationError",
    "UnknownHookError",
    "default_manager",
    "hookimpl",
]
