"""What ``hookline plugins`` and :meth:`PluginManager.list_plugins` report about a plugin."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: its name, source, distribution, version and hooks.

    ``source`` is ``"entry point"`` (installed package), ``"built-in"`` (part of hookline) or
    ``"local"`` (registered by code: a plugin object, a :class:`Callback` or a function).
    """

    name: str
    source: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


def is_builtin(plugin: object) -> bool:
    """Whether a plugin (module, class or instance) is defined inside the hookline package."""
    if isinstance(plugin, ModuleType) or inspect.isclass(plugin):
        module = plugin.__name__ if isinstance(plugin, ModuleType) else plugin.__module__
    else:
        module = type(plugin).__module__
    return module.partition(".")[0] == "hookline"


def hookline_version() -> str:
    """The installed hookline's version (read lazily: the package root imports this layer)."""
    from hookline import __version__

    return __version__
