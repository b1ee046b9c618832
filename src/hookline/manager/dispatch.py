"""The dispatch table: per hook, the caller of the implementations that are due a call.

The engine tests ``name in table`` before it even builds a hook's arguments, so a hook with no
implementation costs one dict lookup.  Left out of the table: hooks nobody implements, the
hooks of rank-zero-only plugins on other ranks, and the hooks a plugin declares idle under its
settings (``idle_hooks()``).
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from hookline.distributed import is_rank_zero_only

#: Hooks that every plugin implements on every rank: settings must agree across ranks.
SETTINGS_HOOKS = frozenset({"hookline_add_options", "hookline_configure"})


def due_callers(
    manager: pluggy.PluginManager, hook_names: Iterable[str], rank: int
) -> dict[str, pluggy.HookCaller]:
    """Hook name to caller, for the hooks of ``hook_names`` with an implementation due a call."""
    idle: dict[int, frozenset[str]] = {}
    for plugin in manager.get_plugins():
        idle_hooks = getattr(plugin, "idle_hooks", None)
        if callable(idle_hooks):
            idle[id(plugin)] = frozenset(idle_hooks())
    table: dict[str, pluggy.HookCaller] = {}
    for name in hook_names:
        caller: pluggy.HookCaller = getattr(manager.hook, name)
        impls = caller.get_hookimpls()
        if not impls or caller.is_historic():
            continue
        if name not in SETTINGS_HOOKS:
            skipped = [
                impl.plugin for impl in impls
                if (rank != 0 and is_rank_zero_only(impl.plugin))
                or name in idle.get(id(impl.plugin), ())
            ]
            if len(skipped) == len(impls):
                continue
            if skipped:
                caller = manager.subset_hook_caller(name, skipped)
        table[name] = caller
    return table
