"""Checks made on every implementation at registration, so that a plugin problem is reported
when the plugin is registered (naming the plugin, the hook and the fix), never mid-run.

The rules are pluggy's, read from the installed pluggy (:mod:`hookline.manager.defaults`): an
implementation takes any of the arguments its hook offers, by name; with pluggy 1.7 that
includes the specification's arguments that have a default, and an implementation's own
argument with a default is filled from the call when the hook passes it (and keeps its
default when the hook does not offer it).  On top of pluggy's rules hookline refuses hooks
outside its catalog, arguments pluggy could never pass, and filters that could never be due.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from hookline.hookspecs import ALIASES, PROJECT
from hookline.manager.attributes import static_method
from hookline.manager.callback import Callback
from hookline.manager.defaults import offered_arguments, pluggy_fills_defaults
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


def check_plugin(manager: PluginManager, plugin: Any, name: str) -> list[tuple[str, str]]:
    """Check ``plugin``'s implementations before it is registered, and raise
    :class:`PluginValidationError` for the first problem: an unknown hook (or a Callback method
    ``on_...`` that is none), an argument the hook does not offer, an argument pluggy would
    never fill, or an event filter on a hook that fires outside the training epochs.

    Returns the implementations, as ``(attribute, hook)``, of hooks that have no specification
    yet but may gain one while the plugin is registered: when the plugin implements a historic
    hook, pluggy replays that hook's past calls to it, and the plugin's code may add hooks then
    (pluggy checks those implementations after the replay).  The manager checks them with
    :func:`check_implementation` once pluggy has registered the plugin.
    """
    found: list[tuple[str, str, bool]] = []
    for attr in dir(plugin):
        opts = manager.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            if isinstance(plugin, Callback) and attr.startswith("on_"):
                if attr in manager.hook_names or attr in manager.aliases:
                    raise PluginValidationError(
                        plugin,
                        f"plugin {name!r}, hook {attr!r}: {attr!r} is no function or method "
                        "(pluggy runs no property or other descriptor to find one); make it a "
                        "method",
                    )
                raise _unknown_hook(manager, plugin, name, attr, attr)
            continue
        found.append((attr, opts.get("specname") or attr, bool(opts.get("optionalhook"))))
    replays = any(
        _has_spec(manager, hook) and getattr(manager.hook, hook).is_historic()
        for _, hook, _ in found
    )
    pending = []
    for attr, hook, optional in found:
        if not _has_spec(manager, hook):
            if optional:
                continue
            if replays:
                pending.append((attr, hook))
                continue
        check_implementation(manager, plugin, name, attr, hook)
    return pending


def check_implementation(
    manager: PluginManager, plugin: Any, name: str, attr: str, hook: str
) -> None:
    """Check ``plugin``'s implementation ``attr`` of ``hook`` (see :func:`check_plugin`)."""
    if not _has_spec(manager, hook):
        raise _unknown_hook(manager, plugin, name, attr, hook)
    function = static_method(plugin, attr)
    if function is None:
        return  # nothing pluggy can call: it refuses the attribute itself
    _check_arguments(plugin, f"plugin {name!r}, hook {hook!r}",
                     offered_arguments(getattr(manager.hook, hook).spec), function)
    event_filter = filter_of(function)
    if hook in UNFILTERABLE and event_filter is not None:
        raise PluginValidationError(
            plugin,
            f"plugin {name!r}, hook {hook!r}: an event filter ({event_filter}) on a hook that "
            "fires outside the training epochs would never be due; filter a hook of the "
            "epoch or batch instead",
        )


def check_specs(manager: PluginManager, specs: Any) -> str | None:
    """What is wrong with the hook specifications a plugin declares (its ``hookspecs``), or
    None: none at all, a name that is already a hook or an alias, or (before pluggy 1.7,
    which never passes it) an argument with a default."""
    found = [attr for attr in dir(specs) if manager.parse_hookspec_opts(specs, attr) is not None]
    if not found:
        return f"its hookspecs ({specs!r}) hold no function marked @{PROJECT}.hookspec"
    taken = manager.hook_names | set(manager.aliases)
    for attr in found:
        if attr in taken:
            owner = manager.custom_hooks.get(attr)
            where = f"plugin {owner!r}" if owner else "hookline's catalog"
            return f"it declares hook {attr!r}, which {where} already has; choose another name"
        function = static_method(specs, attr)
        if function is None or pluggy_fills_defaults():
            continue
        for parameter in inspect.signature(function).parameters.values():
            if parameter.default is not parameter.empty:
                return (f"its hook {attr!r} gives argument {parameter.name!r} a default value, "
                        f"which pluggy {pluggy.__version__} never passes (pluggy 1.7 does); "
                        "remove the default, or require pluggy>=1.7")
    return None


def _has_spec(manager: PluginManager, hook: str) -> bool:
    caller = getattr(manager.hook, hook, None)
    return caller is not None and bool(caller.has_spec())


def _unknown_hook(
    manager: PluginManager, plugin: Any, name: str, attr: str, hook: str
) -> PluginValidationError:
    """The refusal of ``plugin``'s ``attr``, which implements ``hook``, not a hook."""
    fix = unknown_hook_hint(hook, manager.hook_names, manager.aliases)
    what = repr(attr) if attr == hook else f"{attr!r} implements {hook!r}, which"
    return PluginValidationError(
        plugin, f"plugin {name!r}: {what} is not a hookline hook; {fix}"
    )


def _check_arguments(
    plugin: Any, where: str, offered: tuple[str, ...], function: Callable[..., Any]
) -> None:
    """Refuse an argument of ``function`` that pluggy would not fill: one the hook does not
    offer (unless it has a default and pluggy fills defaults: then it keeps its default), one
    with a default before pluggy 1.7, and a keyword-only one."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return  # a builtin without a signature: pluggy passes nothing it cannot see
    fills_defaults = pluggy_fills_defaults()
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        problem = None
        defaulted = parameter.default is not parameter.empty
        if parameter.kind is parameter.KEYWORD_ONLY:
            problem = ("is keyword-only, and pluggy never passes such an argument; make it an "
                       "ordinary parameter")
        elif defaulted and not fills_defaults:
            problem = (f"has a default value, and pluggy {pluggy.__version__} never fills such "
                       "an argument (pluggy 1.7 does); remove the default: the hook always "
                       "passes it")
        elif defaulted and parameter.kind is parameter.POSITIONAL_ONLY:
            problem = ("is positional-only with a default value, and pluggy passes such an "
                       "argument by name; make it an ordinary parameter")
        elif not defaulted and parameter.name not in offered:
            offers = f"it offers: {', '.join(offered)}" if offered else "it offers none"
            problem = f"is not offered by this hook; {offers}"
        if problem is not None:
            raise PluginValidationError(
                plugin, f"{where}: argument {parameter.name!r} {problem}"
            )
