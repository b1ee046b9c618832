"""Checks made on every implementation at registration, so that a plugin problem is reported
when the plugin is registered (naming the plugin, the hook and the fix), never mid-run."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from hookline.hookspecs import ALIASES
from hookline.manager.callback import Callback
from hookline.manager.errors import PluginValidationError
from hookline.settings import closest

if TYPE_CHECKING:
    from hookline.manager.plugin_manager import PluginManager


def unknown_hook_hint(name: str, known: Iterable[str]) -> str:
    """``did you mean 'x'?`` for the closest hook or alias, else where the catalog is."""
    hint = closest(name, set(known) | set(ALIASES))
    return f"did you mean {hint!r}?" if hint else "run `hookline hooks` for the catalog."


def check_plugin(manager: PluginManager, plugin: Any, name: str) -> None:
    """Raise :class:`PluginValidationError` for the first problem among ``plugin``'s
    implementations: an unknown hook (or a Callback method ``on_...`` that is none), an
    argument the hook does not offer, or an argument with a default value."""
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
        _check_arguments(manager, plugin, name, hook_name, getattr(plugin, attr))


def _unknown_hook(manager: PluginManager, plugin: Any, name: str, attr: str, hook: str) -> None:
    fix = unknown_hook_hint(hook, manager.hook_names)
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
