"""Checks made on every implementation at registration, so that a plugin problem is reported
when the plugin is registered (naming the plugin, the hook and the fix), never mid-run."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hookline.hookspecs import ALIASES, PROJECT
from hookline.manager.callback import Callback
from hookline.manager.errors import PluginValidationError
from hookline.manager.filters import UNFILTERABLE, filter_of
from hookline.settings import closest

if TYPE_CHECKING:
    from hookline.manager.plugin_manager import PluginManager


def unknown_hook_hint(
    name: str, known: Iterable[str], aliases: Iterable[str] = ALIASES
) -> str:
    """``did you mean 'x'?`` for the closest hook or alias, else where the catalog is."""
    hint = closest(name, set(known) | set(aliases))
    return f"did you mean {hint!r}?" if hint else "run `hookline hooks` for the catalog."


def check_plugin(manager: PluginManager, plugin: Any, name: str) -> None:
    """Raise :class:`PluginValidationError` for the first problem among ``plugin``'s
    implementations: an unknown hook (or a Callback method ``on_...`` that is none), an
    argument the hook does not offer, an argument with a default value, or an event filter on
    a hook that fires outside the training epochs."""
    for attr in dir(plugin):
        opts = manager.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            if isinstance(plugin, Callback) and attr.startswith("on_"):
                _unknown_hook(manager, plugin, name, attr, attr)
            continue
        hook_name = opts.get("specname") or attr
        caller = getattr(manager.hook, hook_name, None)
        if caller is None or not caller.has_spec():
            if opts.get("optionalhook"):
                continue
            _unknown_hook(manager, plugin, name, attr, hook_name)
        function = getattr(plugin, attr)
        _check_arguments(manager, plugin, name, hook_name, function)
        if hook_name in UNFILTERABLE and filter_of(function) is not None:
            raise PluginValidationError(
                plugin,
                f"plugin {name!r}, hook {hook_name!r}: an event filter "
                f"({filter_of(function)}) on a hook that fires outside the training epochs "
                "would never be due; filter a hook of the epoch or batch instead",
            )


def check_specs(
    specs: Any, known: Iterable[str], aliases: Mapping[str, str], declared: Mapping[str, str]
) -> str | None:
    """What is wrong with the hook specifications a plugin declares, or None: none at all, a
    name that is already a hook or an alias (``declared``: custom hook to its plugin), or an
    argument with a default (pluggy would never pass it)."""
    marker = f"{PROJECT}_spec"
    found = [attr for attr in dir(specs) if getattr(getattr(specs, attr, None), marker, None)]
    if not found:
        return (f"its hookspecs ({specs!r}) hold no function marked @hookline.hookspec")
    taken = set(known) | set(aliases)
    for attr in found:
        if attr in taken:
            owner = f"plugin {declared[attr]!r}" if attr in declared else "hookline's catalog"
            return f"it declares hook {attr!r}, which {owner} already has; choose another name"
        for parameter in inspect.signature(getattr(specs, attr)).parameters.values():
            if parameter.default is not parameter.empty:
                return (f"its hook {attr!r} gives argument {parameter.name!r} a default value; "
                        "a hook's callers always pass every argument: remove the default")
    return None


def _unknown_hook(manager: PluginManager, plugin: Any, name: str, attr: str, hook: str) -> None:
    fix = unknown_hook_hint(hook, manager.hook_names, manager.aliases)
    raise PluginValidationError(
        plugin, f"plugin {name!r}: {attr!r} is not a hookline hook ({hook!r}); {fix}"
    )


def _check_arguments(
    manager: PluginManager, plugin: Any, name: str, hook_name: str, function: Callable[..., Any]
) -> None:
    offered = tuple(getattr(manager.hook, hook_name).spec.argnames)
    where = f"plugin {name!r}, hook {hook_name!r}"
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return  # a builtin without a signature: pluggy passes nothing it cannot see
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.name not in offered:
            raise PluginValidationError(
                plugin,
                f"{where}: argument {parameter.name!r} is not offered by this hook; "
                f"it offers: {', '.join(offered)}",
            )
        if parameter.default is not parameter.empty or parameter.kind is parameter.KEYWORD_ONLY:
            raise PluginValidationError(
                plugin,
                f"{where}: argument {parameter.name!r} has a default value or is "
                "keyword-only, and pluggy never fills such an argument; make it a plain "
                "positional parameter without a default (the hook always passes it)",
            )
