"""Reading a plugin's attributes without running its code, the way pluggy finds hooks.

pluggy looks hook implementations up with :func:`inspect.getattr_static`: a plugin whose
``__getattr__`` answers every name, a property or a ``cached_property`` is never run while the
plugin is scanned.  hookline reads the attributes it gives a meaning to (``hookline_api``,
``hookspecs``, ``state_key``, ``error_policy``, ``rank_zero_only``, ``state_dict``,
``idle_hooks``, event filters) the same way:

* :func:`static_value` is a setting's plain value: one the object holds itself (instance
  ``__dict__``, a ``__slots__`` slot, a module's namespace) or a class attribute that is no
  descriptor.  ``__getattr__`` is never asked, and a property is not run: both count as absent.
* :func:`static_method` is a method, bound the way ``getattr`` would bind it, so that a
  ``state_dict()`` is still an ordinary call; only its lookup is static.  :func:`hookable`
  says whether an attribute is one pluggy would take for a hook implementation.
* :func:`computed_setting` names a setting a plugin declares through a descriptor (a
  property, say), which hookline refuses at registration: read statically, it would be
  silently ignored.
* :class:`PluginTraits` holds what the manager reads of a plugin again and again (its policy,
  state, idle hooks), read when it registers and again when the plugins are configured for a
  run, not at each use: a static lookup costs microseconds, and rebuilding the dispatch table
  or collecting state asked every plugin each time.
"""

from __future__ import annotations

import inspect
import types
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

#: What a lookup returns for a name the object does not have.
_ABSENT: Final = object()

#: The attributes hookline reads as settings of a plugin object.
PLUGIN_SETTINGS: Final = ("hookline_api", "hookspecs", "state_key", "error_policy",
                          "rank_zero_only")


def own_attributes(obj: object) -> dict[str, Any]:
    """``obj``'s own ``__dict__`` (a module's namespace), read without ``getattr``; empty when
    it has none."""
    try:
        own = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return {}
    return own if isinstance(own, dict) else {}


def _lookup(obj: object, name: str) -> tuple[object, bool]:
    """``(value, held)``: what :func:`inspect.getattr_static` finds for ``name`` on ``obj``
    (``_ABSENT`` when nothing), and whether ``obj`` holds it itself (instance ``__dict__``,
    ``__slots__`` slot or module namespace), in which case ``getattr`` hands it out unbound."""
    is_class = inspect.isclass(obj)
    own = own_attributes(obj)
    if is_class or isinstance(obj, types.ModuleType) or name in own:
        found = inspect.getattr_static(obj, name, _ABSENT)
    else:  # what an instance does not hold itself, its class answers alike for every instance
        found = _class_side(obj, name)
    if found is _ABSENT:
        return _ABSENT, False
    if isinstance(found, types.MemberDescriptorType) and not is_class:
        try:  # a __slots__ slot: reading it runs no code of the plugin's
            return found.__get__(obj, type(obj)), True
        except AttributeError:  # an empty slot
            return _ABSENT, False
    if is_class:
        return found, False
    return found, own.get(name, _ABSENT) is found


#: Per class, what :func:`inspect.getattr_static` finds on an instance that does not hold the
#: name itself: a static lookup walks the class's MRO and its metaclass's at every call (a few
#: microseconds each in Python 3.11), and registering the built-ins asks hundreds of them.
#: Read once per class and name, across managers, until :func:`forget_class_reads` (which
#: configuring a run calls: a class attribute changed since registration counts for the run).
#: Weakly keyed, though a method that uses ``super()`` refers to its own class.
_CLASS_SIDE: weakref.WeakKeyDictionary[type, dict[str, object]] = weakref.WeakKeyDictionary()
#: Per type, whether its instances are descriptors (read as :func:`_is_descriptor` reads it).
_DESCRIPTOR_TYPES: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def forget_class_reads() -> None:
    """Read every class attribute afresh from now on (the reads are kept per class)."""
    _CLASS_SIDE.clear()


def _class_side(obj: object, name: str) -> object:
    """``name`` as ``obj``, which does not hold it itself, finds it through its class (as
    would any instance of that class): or ``_ABSENT``."""
    known = _CLASS_SIDE.setdefault(type(obj), {})
    if name not in known:
        known[name] = inspect.getattr_static(obj, name, _ABSENT)
    return known[name]


def _is_descriptor(value: object) -> bool:
    """Whether ``value`` computes what ``getattr`` returns (its type defines ``__get__``)."""
    kind = type(value)
    if kind not in _DESCRIPTOR_TYPES:
        _DESCRIPTOR_TYPES[kind] = inspect.getattr_static(kind, "__get__", None) is not None
    return _DESCRIPTOR_TYPES[kind]


def static_value(obj: object, name: str, default: Any = None) -> Any:
    """``obj.name`` read statically: the plain value ``obj`` holds or its class defines, else
    ``default`` (also for a name that only ``__getattr__`` or a descriptor would answer)."""
    value, held = _lookup(obj, name)
    if value is _ABSENT or (not held and _is_descriptor(value)):
        return default
    return value


def hookable(obj: object, name: str) -> bool:
    """Whether ``obj.name``, found statically, is what pluggy takes for a hook implementation:
    a function, a bound method, a static or a class method."""
    value, _ = _lookup(obj, name)
    return isinstance(value, types.FunctionType | types.MethodType | staticmethod | classmethod)


def static_method(obj: object, name: str) -> Callable[..., Any] | None:
    """``obj.name`` when it is a method or another callable found statically, bound as
    ``getattr`` binds it; None when absent, not callable, or behind a descriptor whose code
    would have to run (a property)."""
    value, held = _lookup(obj, name)
    if value is _ABSENT:
        return None
    if held or not _is_descriptor(value):
        return value if callable(value) else None
    if isinstance(value, staticmethod):
        function: Callable[..., Any] = value.__func__
        return function
    owner = obj if inspect.isclass(obj) else type(obj)
    if isinstance(value, classmethod):
        bound: Callable[..., Any] = value.__get__(owner, owner)
        return bound
    if inspect.isfunction(value):
        return value if inspect.isclass(obj) else types.MethodType(value, obj)
    return None


def computed_setting(obj: object, names: Iterable[str] = PLUGIN_SETTINGS) -> tuple[str, str] | None:
    """The first of ``names`` that ``obj`` defines through a descriptor (a property, a
    ``cached_property`` not computed yet) instead of a plain value, with the descriptor's type
    name; None when there is none."""
    for name in names:
        value, held = _lookup(obj, name)
        if value is not _ABSENT and not held and _is_descriptor(value):
            return name, type(value).__name__
    return None


class PluginTraits(NamedTuple):
    """What hookline reads of a plugin object besides its hooks, read statically."""

    #: ``error_policy`` as declared (any value; the fault policy checks it).
    error_policy: Any
    #: ``rank_zero_only``: the plugin's hooks run on rank zero alone.
    rank_zero_only: bool
    #: ``state_key``: the key its state is saved under, when it declares one.
    state_key: Any
    #: ``state_dict``, bound: None for a plugin without state.
    state_dict: Callable[..., Any] | None
    #: ``idle_hooks``, bound: None for a plugin that declares none.
    idle_hooks: Callable[[], Iterable[str]] | None


def plugin_traits(plugin: object) -> PluginTraits:
    """``plugin``'s :class:`PluginTraits`, each read as :func:`static_value` or
    :func:`static_method` reads it."""
    return PluginTraits(
        error_policy=static_value(plugin, "error_policy"),
        rank_zero_only=bool(static_value(plugin, "rank_zero_only", False)),
        state_key=static_value(plugin, "state_key"),
        state_dict=static_method(plugin, "state_dict"),
        idle_hooks=static_method(plugin, "idle_hooks"),
    )
