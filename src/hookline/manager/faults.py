"""The fault policy: what happens when a plugin's hook raises.

``raise``
    The exception ends the run: the phase fires ``on_exception`` then ``teardown`` (the last
    checkpoint on disk is kept, the summary is written, trackers are marked failed) and the
    exception propagates.  The default, and the policy of the control plugins (checkpointing,
    early stopping, learning-rate schedules, the NaN guard, the time limit).  It costs nothing:
    such a plugin's functions are called as they are, and the plugin at fault is found
    afterwards, from the exception's traceback (:func:`culprit`,
    :meth:`PluginManager.failure_of <hookline.PluginManager.failure_of>`).
``disable``
    The failure is reported in one line (:class:`PluginDisabledWarning`) and recorded in
    :attr:`PluginManager.failures <hookline.PluginManager.failures>` (the run summary lists
    it); the plugin's ``teardown`` gets a chance to release what it holds; then the plugin is
    unregistered and the run goes on without it.  The policy of observers: loggers,
    trackers, notifiers, progress, plots, the resource monitor and the summary.

A plugin declares its policy with an ``error_policy`` attribute.  The ``plugin_errors`` setting
overrides it: ``raise`` or ``disable`` for every plugin, ``NAME:POLICY`` for one, or both,
comma-separated (``plugin_errors=disable,checkpoint:raise``).  The hooks that declare and read
settings are never guarded: a bad setting is the user's error, reported as such.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import pluggy

from hookline.errors import first_line
from hookline.manager.dispatch import SETTINGS_HOOKS
from hookline.settings import SettingsError

if TYPE_CHECKING:
    from hookline.manager.plugin_manager import PluginManager

POLICIES = ("raise", "disable")
#: The setting that overrides the plugins' own policies, and its default.
SETTING = "plugin_errors"
DEFAULT_SETTING = "default"
#: Hooks whose failures are never caught: settings, and the historic registration hook.
NEVER_GUARDED = SETTINGS_HOOKS | {"on_plugin_registered"}
#: Argument names under which a hook passes the phase object.
_PHASE_ARGUMENTS = ("run", "trainer", "validator", "predictor", "exporter")


class PluginDisabledWarning(UserWarning):
    """A plugin whose policy is ``disable`` failed and was unregistered for the rest of the run."""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed: its name, the hook, the error as ``Type: message``, and for an
    installed plugin its distribution as ``name version`` (None for the others)."""

    plugin: str
    hook: str
    error: str
    distribution: str | None = None

    @classmethod
    def of(
        cls, plugin: str, hook: str, error: BaseException, distribution: str | None = None
    ) -> PluginFailure:
        """The failure of ``plugin`` in ``hook`` with ``error``."""
        return cls(plugin, hook, f"{type(error).__name__}: {error}", distribution)

    def as_dict(self) -> dict[str, str | None]:
        """The failure as plain data (for ``summary.json``)."""
        return asdict(self)

    def __str__(self) -> str:
        """One line: ``plugin 'name' (distribution) failed in hook: Type: message``."""
        source = f" ({self.distribution})" if self.distribution else ""
        return f"plugin {self.plugin!r}{source} failed in {self.hook}: {first_line(self.error)}"


def declared_policy(declared: object) -> str:
    """The policy that a plugin's ``error_policy`` value declares: ``raise`` when it is
    none."""
    return declared if isinstance(declared, str) and declared in POLICIES else "raise"


def parse_setting(value: str) -> tuple[str | None, dict[str, str]]:
    """``plugin_errors``' value as (the policy for every plugin or None, per-plugin policies).

    :raises SettingsError: naming the setting, for a word that is no policy.
    """
    every: str | None = None
    each: dict[str, str] = {}
    for word in (part.strip() for part in value.split(",")):
        if not word or word == DEFAULT_SETTING:
            continue
        name, colon, policy = word.rpartition(":")
        if policy not in POLICIES or (colon and not name):
            raise SettingsError(
                f"setting {SETTING!r}: {word!r} is not a policy; use raise, disable or "
                f"NAME:raise / NAME:disable, comma-separated (e.g. 'disable,checkpoint:raise')"
            )
        if colon:
            each[name] = policy
        else:
            every = policy
    return every, each


def phase_of(
    argnames: tuple[str, ...], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Any:
    """The phase object among a hook call's arguments (``args``, named by ``argnames``, then
    ``kwargs``: pluggy passes the arguments with defaults by name), if the hook passes one."""
    for name, value in (*zip(argnames, args, strict=False), *kwargs.items()):
        if name in _PHASE_ARGUMENTS:
            return value
    return None


def culprit(manager: pluggy.PluginManager, error: BaseException) -> tuple[str, str] | None:
    """The plugin whose hook implementation raised ``error``, as (its registered name, the
    hook), or None when no registered implementation is in the error's traceback.

    Read from the traceback after the fact, so that a plugin under ``raise`` is called without
    anything in between: the implementation deepest in the traceback is the one that raised
    (a hook that another plugin fires from its own blames the inner plugin).  Functions that
    share their code (the methods of instances of one class, functions made by one factory)
    are told apart by the frame's ``self`` and closure.
    """
    candidates: dict[Any, list[tuple[Callable[..., Any], str, str]]] = {}
    callers = [value for value in vars(manager.hook).values()
               if isinstance(value, pluggy.HookCaller)]
    for caller in callers:
        for impl in caller.get_hookimpls():
            function = inspect.unwrap(impl.function)  # guarded ones, and decorated ones
            code = getattr(getattr(function, "__func__", function), "__code__", None)
            if code is not None:
                candidates.setdefault(code, []).append((function, impl.plugin_name, caller.name))
    found: tuple[str, str] | None = None
    trace = error.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        for function, plugin_name, hook in candidates.get(frame.f_code, ()):
            if _runs(frame, function):
                found = (plugin_name, hook)
                break
        trace = trace.tb_next
    return found


def _runs(frame: FrameType, function: Callable[..., Any]) -> bool:
    """Whether ``frame``, which runs ``function``'s code, is a call of ``function`` itself:
    the same bound object (first argument) and the same closure."""
    local = frame.f_locals
    owner = getattr(function, "__self__", None)
    names = frame.f_code.co_varnames
    if owner is not None and not (names and local.get(names[0]) is owner):
        return False
    cells = getattr(getattr(function, "__func__", function), "__closure__", None) or ()
    try:
        return all(
            local.get(name) is cell.cell_contents
            for name, cell in zip(frame.f_code.co_freevars, cells, strict=False)
        )
    except ValueError:  # an empty cell
        return False


def guard(
    function: Callable[..., Any],
    on_failure: Callable[[BaseException, tuple[Any, ...], dict[str, Any]], None],
) -> Callable[..., Any]:
    """``function`` with an ``Exception`` it raises handed to ``on_failure`` (with the call's
    arguments) instead of propagating; the call then returns ``None``."""

    def guarded(*args: Any, **kwargs: Any) -> Any:  # kwargs: the arguments with defaults
        try:
            return function(*args, **kwargs)
        except Exception as error:
            on_failure(error, args, kwargs)
            return None

    guarded.__wrapped__ = function  # type: ignore[attr-defined]
    return guarded


class FaultPolicy:
    """Keeps each registered plugin's hook functions guarded exactly when its policy is
    ``disable``, and disables the plugins that fail."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        #: The user's override for every plugin, and per plugin name.
        self.every: str | None = None
        self.each: dict[str, str] = {}
        #: The failures of ``disable`` plugins, in order.
        self.failures: list[PluginFailure] = []
        self._originals: dict[int, tuple[pluggy.HookImpl, Callable[..., Any]]] = {}

    def policy(self, name: str, plugin: object) -> str:
        """The policy in force for the plugin registered as ``name``."""
        return (self.each.get(name) or self.every
                or declared_policy(self.manager.plugin_traits(plugin).error_policy))

    def configure(self, values: Mapping[str, str]) -> None:
        """Take the user's overrides from the settings' ``plugin_errors``."""
        self.every, self.each = parse_setting(values.get(SETTING, DEFAULT_SETTING))
        self.apply()

    def apply(
        self, plugin: object | None = None, callers: Sequence[pluggy.HookCaller] | None = None
    ) -> None:
        """Guard or unguard the implementations of ``plugin`` (of every plugin when None) to
        match its policy; ``callers``: the plugin's hook callers, when the caller has them."""
        manager = self.manager
        if plugin is not None and callers is None:
            callers = manager.get_hookcallers(plugin)
        hooks = [caller.name for caller in callers or ()] if plugin is not None else (
            manager.hook_names
        )
        for name in set(hooks) - NEVER_GUARDED:
            for impl in getattr(manager.hook, name).get_hookimpls():
                if impl.wrapper or impl.hookwrapper or (
                    plugin is not None and impl.plugin is not plugin
                ):
                    continue  # wrappers (generators around the others) are not guarded
                guarded = id(impl) in self._originals
                wanted = self.policy(impl.plugin_name, impl.plugin) == "disable"
                if wanted and not guarded:
                    self._originals[id(impl)] = (impl, impl.function)
                    guarded_function = guard(impl.function, self._failed(impl.plugin_name, name))
                    setattr(impl, "function", guarded_function)  # noqa: B010 - Final in pluggy
                elif guarded and not wanted:
                    setattr(impl, "function", self._originals.pop(id(impl))[1])  # noqa: B010

    def forget(self, plugin: object) -> None:
        """Drop what is kept of an unregistered plugin's implementations."""
        for key, (impl, _) in list(self._originals.items()):
            if impl.plugin is plugin:
                del self._originals[key]

    def _failed(
        self, plugin_name: str, hook: str
    ) -> Callable[[BaseException, tuple[Any, ...], dict[str, Any]], None]:
        def failed(error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            manager = self.manager
            plugin = manager.get_plugin(plugin_name)
            if plugin is None:
                return  # already disabled by an earlier failure in the same call
            failure = PluginFailure.of(
                plugin_name, hook, error, manager.entry_point_plugins().get(plugin_name)
            )
            self.failures.append(failure)
            warnings.warn(
                f"hookline: {failure}; it is disabled for the rest of the run",
                PluginDisabledWarning,
                stacklevel=2,
            )
            argnames = next(
                (impl.argnames for impl in getattr(manager.hook, hook).get_hookimpls()
                 if impl.plugin is plugin), (),
            )
            phase = phase_of(tuple(argnames), args, kwargs)
            if hook != "teardown" and phase is not None:
                self._release(plugin, phase)
            manager.unregister(plugin)

        return failed

    def _release(self, plugin: object, phase: Any) -> None:
        """Call the failed plugin's ``teardown`` so that it closes files, threads and runs;
        a second failure there is ignored (the plugin is being disabled anyway)."""
        for impl in self.manager.hook.teardown.get_hookimpls():
            if impl.plugin is plugin:
                original = self._originals.get(id(impl), (impl, impl.function))[1]
                with contextlib.suppress(Exception):  # best effort: the plugin is being dropped
                    original(*[phase for _ in impl.argnames], **{
                        name: phase for name in impl.kwargnames if name in _PHASE_ARGUMENTS
                    })
