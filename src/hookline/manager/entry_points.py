"""Discovery of installed plugins: entry points of the group ``hookline``, each loaded on its
own, so that one broken package is reported with its distribution and skipped (or, in strict
mode, is an error) instead of taking the tool down."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hookline.manager.errors import PluginLoadError, PluginLoadWarning

if TYPE_CHECKING:
    import importlib.metadata

    from hookline.manager.plugin_manager import PluginManager

ENTRY_POINT_GROUP = "hookline"
#: Comma lists of entry-point names: load only these / never load these.
ONLY_ENV = "HOOKLINE_PLUGINS"
DISABLE_ENV = "HOOKLINE_DISABLE_PLUGINS"


def names_from_env(variable: str) -> set[str] | None:
    """Comma-separated names from ``variable``; None when it is unset, empty set when empty."""
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def distribution_label(dist: importlib.metadata.Distribution | None) -> str:
    """``name version`` of a distribution, for messages."""
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def load_entry_points(
    manager: PluginManager, only: Iterable[str] | None, block: Iterable[str], strict: bool
) -> dict[str, importlib.metadata.Distribution | None]:
    """Register the installed plugins on ``manager``; see
    :meth:`PluginManager.load_entrypoint_plugins`.  Returns each loaded name's distribution."""
    import importlib.metadata  # only discovery needs it: keeps `import hookline` light

    wanted = names_from_env(ONLY_ENV) if only is None else set(only)
    # a plugin asked for by name that cannot be loaded is an error, whatever `strict` says
    fatal = strict or wanted is not None
    for name in set(block) | (names_from_env(DISABLE_ENV) or set()):
        manager.set_blocked(name)
    loaded: dict[str, importlib.metadata.Distribution | None] = {}
    seen: set[str] = set()
    installed = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for entry_point in installed:
        if wanted is not None and entry_point.name not in wanted:
            continue
        if entry_point.name in seen:
            continue
        seen.add(entry_point.name)
        if manager.is_blocked(entry_point.name) or manager.has_plugin(entry_point.name):
            continue
        dist = entry_point.dist
        try:
            target = entry_point.load()
            plugin = target() if inspect.isclass(target) else target
            manager.register(plugin, name=entry_point.name)
        except Exception as error:
            report(
                manager,
                PluginLoadError(
                    f"plugin {entry_point.name!r} ({entry_point.value}, from "
                    f"{distribution_label(dist)}) could not be loaded: "
                    f"{type(error).__name__}: {error}",
                    entry_point=entry_point.name,
                    distribution=distribution_label(dist),
                    error=error,
                ),
                fatal,
            )
            continue
        loaded[entry_point.name] = dist
    for missing in sorted((wanted or set()) - seen):
        names = ", ".join(sorted({entry_point.name for entry_point in installed})) or "none"
        report(
            manager,
            PluginLoadError(f"plugin {missing!r} is not installed (installed plugins: {names})"),
            fatal,
        )
    return loaded


def report(manager: PluginManager, problem: PluginLoadError, strict: bool) -> None:
    """Raise ``problem`` in strict mode; otherwise record it and warn that it was skipped."""
    if strict:
        raise problem from problem.error
    manager.load_errors.append(problem)
    warnings.warn(f"hookline: {problem}; skipped", PluginLoadWarning, stacklevel=4)
