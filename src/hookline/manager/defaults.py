"""Argument defaults, as the installed pluggy treats them.

pluggy 1.7 gives defaults a meaning on both sides of a hook:

* a hook specification's argument with a default (``def on_x(trainer, extra=None)``) is
  offered by the hook like any other, and a call that omits it passes the default.  That is how
  a hook gains an argument without breaking the callers or the plugins written before it;
* an implementation's argument with a default gets the call's value when the hook passes
  one (the specification's default included), and keeps its own default otherwise: a plugin
  written for a newer hook can run where the hook does not offer that argument yet.

Earlier pluggy never fills an implementation's argument that has a default, and does not
offer a specification's argument that has one; hookline refuses both there.  Which of the two
behaviours the installed pluggy has is found out once, by trying it
(:func:`pluggy_fills_defaults`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pluggy

_PROBE = "hookline_defaults_probe"
#: pluggy's own manager, as imported (a test may put another class in its place later).
_PluggyManager = pluggy.PluginManager
_probe_spec = pluggy.HookspecMarker(_PROBE)
_probe_impl = pluggy.HookimplMarker(_PROBE)


class _ProbeSpec:
    @_probe_spec
    def probe(self, given: object, defaulted: int = 1) -> None:
        """A hook whose second argument has a default."""


class _ProbePlugin:
    @_probe_impl
    def probe(self, given: object, defaulted: int = 0) -> int:
        return defaulted


@functools.cache
def pluggy_fills_defaults() -> bool:
    """Whether the installed pluggy fills arguments that have defaults (pluggy 1.7 on): found
    by calling a hook whose specification and implementation both give one a default."""
    manager = _PluggyManager(_PROBE)
    manager.add_hookspecs(_ProbeSpec)
    try:
        manager.register(_ProbePlugin())
    except pluggy.PluginValidationError:
        return False
    return bool(manager.hook.probe(given=None) == [1])


def offered_arguments(spec: Any) -> tuple[str, ...]:
    """Every argument a hook specification (a ``pluggy.HookSpec``) offers its
    implementations: with pluggy 1.7, those with a default too (``kwargnames``)."""
    argnames: tuple[str, ...] = tuple(spec.argnames)
    if not pluggy_fills_defaults():
        return argnames
    return argnames + tuple(getattr(spec, "kwargnames", ()))


def call_defaults(spec: Any) -> Mapping[str, Any]:
    """The values pluggy passes for the arguments a call omits: the specification's defaults
    (empty before pluggy 1.7, and for a hook without a specification)."""
    if spec is None or not pluggy_fills_defaults():
        return MappingProxyType({})
    return MappingProxyType(dict(getattr(spec, "kwargdefaults", None) or {}))
