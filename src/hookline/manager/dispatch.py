"""The dispatch table: per hook, the implementations that are due a call.

The engine tests ``name in table`` before it even builds a hook's arguments, so a hook with no
implementation costs one dict lookup.  Left out of the table: hooks nobody implements, the
hooks of rank-zero-only plugins on other ranks, the hooks a plugin declares idle under its
settings (``idle_hooks()``), and filtered implementations that are not due
(:mod:`hookline.manager.filters`).

An entry (:class:`DueHook`) runs its implementations through the manager's hook executor,
the very path of ``pluggy.HookCaller.__call__`` (so hook-call monitoring, ``--trace-hooks``
and the test recorder see every call) without what that call repeats each time: the check
that every argument of the specification was passed (the engine always passes them all) and
the copy of the implementation list (the table is rebuilt, never changed in place, when
plugins come and go).  That makes a call through hookline cheaper than a direct pluggy call.
Like pluggy's call, it passes the specification's defaults for the arguments a call omits
(pluggy 1.7; :mod:`hookline.manager.defaults`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import pluggy

from hookline.manager.attributes import PluginTraits
from hookline.manager.defaults import call_defaults

#: Hooks that every plugin implements on every rank: settings must agree across ranks.
SETTINGS_HOOKS = frozenset({"hookline_add_options", "hookline_configure"})


class DueHook(NamedTuple):
    """A hook's implementations due a call, and how to call them (a tuple: the manager
    unpacks it in one step)."""

    hookexec: Callable[..., Any]
    name: str
    impls: list[pluggy.HookImpl]
    firstresult: bool
    #: The specification's argument defaults, passed where a call omits the argument.
    defaults: Mapping[str, Any]

    def __call__(self, **kwargs: Any) -> Any:
        if self.defaults:
            kwargs = {**self.defaults, **kwargs}
        return self.hookexec(self.name, self.impls, kwargs, self.firstresult)

    def get_hookimpls(self) -> list[pluggy.HookImpl]:
        return list(self.impls)


def due_callers(
    manager: pluggy.PluginManager,
    hook_names: Iterable[str],
    rank: int,
    not_due: Callable[[str, object], bool],
    traits: Callable[[object], PluginTraits],
) -> dict[str, DueHook]:
    """Hook name to :class:`DueHook`, for the hooks of ``hook_names`` with an implementation
    due a call (``not_due(hook, plugin)``: whether a filter keeps one out for now; ``traits``:
    a registered plugin's :class:`~hookline.manager.attributes.PluginTraits`)."""
    idle: dict[int, frozenset[str]] = {}  # asked once per plugin: idle_hooks() may change

    def idle_hooks(plugin: object) -> frozenset[str]:
        if id(plugin) not in idle:
            method = traits(plugin).idle_hooks
            idle[id(plugin)] = frozenset(method()) if method is not None else frozenset()
        return idle[id(plugin)]

    table: dict[str, DueHook] = {}
    for name in hook_names:
        caller: pluggy.HookCaller = getattr(manager.hook, name)
        impls = caller.get_hookimpls()
        if not impls or caller.is_historic():
            continue
        if name not in SETTINGS_HOOKS:
            skipped = [
                impl.plugin for impl in impls
                if (rank != 0 and traits(impl.plugin).rank_zero_only)
                or name in idle_hooks(impl.plugin)
                or not_due(name, impl.plugin)
            ]
            if len(skipped) == len(impls):
                continue
            if skipped:
                caller = manager.subset_hook_caller(name, skipped)
        spec = caller.spec
        firstresult = bool(spec.opts.get("firstresult", False)) if spec else False
        # the manager's own executor (pluggy's, inherited): it honours hook-call monitoring
        table[name] = DueHook(
            manager._hookexec, name, caller.get_hookimpls(), firstresult, call_defaults(spec)
        )
    return table
