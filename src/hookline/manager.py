"""The hookline plugin manager: pluggy's, with validation, callbacks, entry points and listing.

What it adds to :class:`pluggy.PluginManager`:

* :class:`Callback`: subclass it and name methods after hooks; no decorator is needed.
* :meth:`PluginManager.add_callback` / :meth:`PluginManager.remove_callback` for plain functions.
* The aliases ``on_epoch_start``, ``on_epoch_end``, ``on_batch_start`` and ``on_batch_end``,
  resolved once at registration through pluggy's ``specname``.
* Validation at registration that names the plugin, the hook and the fix; a registration that
  fails leaves nothing behind.
* Entry-point discovery (group ``hookline``), each entry point loaded on its own: a broken one is
  reported and skipped, or is an error in strict mode.
* :meth:`PluginManager.list_plugins`: name, distribution, version and hooks of each plugin.
* A dispatch table holding only hooks that have implementations, refreshed on every
  register/unregister, so that the engine never calls pluggy for an empty hook.

Call order, as pluggy defines it: implementations run last-registered first; ``tryfirst=True``
moves one to the front and ``trylast=True`` to the back (among themselves, again
last-registered first); ``wrapper=True`` implementations run around all of them.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from hookline import hookspecs
from hookline.distributed import env_rank, is_rank_zero_only
from hookline.settings import Options, Settings, closest

if TYPE_CHECKING:
    import importlib.metadata

ENTRY_POINT_GROUP = "hookline"
#: Hooks that every plugin implements on every rank: settings must agree across ranks.
SETTINGS_HOOKS = frozenset({"hookline_add_options", "hookline_configure"})
ONLY_ENV = "HOOKLINE_PLUGINS"
DISABLE_ENV = "HOOKLINE_DISABLE_PLUGINS"

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)
"""Marks a function or method as a hook implementation: ``@hookimpl`` or
``@hookimpl(tryfirst=True)``.  Not needed on the methods of a :class:`Callback`."""

ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "on_epoch_start": "on_train_epoch_start",
        "on_epoch_end": "on_train_epoch_end",
        "on_batch_start": "on_train_batch_start",
        "on_batch_end": "on_train_batch_end",
    }
)
"""Alternative hook names, mapped to the catalog's names."""


class Callback:
    """Base class for callbacks: every method named after a hook (or an alias) implements it.

    >>> class PrintEpoch(Callback):
    ...     def on_epoch_end(self, trainer):
    ...         print(trainer.epoch, trainer.metrics)

    A method may still carry ``@hookimpl(tryfirst=True)`` (or ``trylast``, ``wrapper``) to
    choose its place in the call order.  Methods whose names start with ``on_`` must be hooks:
    a misspelt hook is an error at registration, not a callback that silently never runs.
    Set ``rank_zero_only = True`` on a callback that only writes or reports, so that it runs
    on rank zero alone in distributed training.

    A callback whose settings leave some of its hooks with nothing to do (a per-step hook of
    a feature that is off) lists them in :meth:`idle_hooks`: after configuration the engine
    does not call them, so an idle per-batch hook costs nothing.
    """

    #: Run only on rank zero in distributed training (see :mod:`hookline.distributed`).
    rank_zero_only: bool = False

    def idle_hooks(self) -> Iterable[str]:
        """The hooks this plugin implements but needs no call of under its current settings.

        Read when the dispatch table is rebuilt, which happens after every registration and
        after ``hookline_configure``.  Any plugin (not only a Callback) may define it.
        """
        return ()


class PluginValidationError(pluggy.PluginValidationError):
    """A plugin cannot be registered; the message names the plugin, the hook and the fix."""


class PluginLoadError(Exception):
    """An entry-point plugin failed to import or to register.

    :ivar entry_point: the entry point's name (``None`` for a name asked for but not installed).
    :ivar distribution: the distribution that declares it, as ``name version``.
    :ivar error: the underlying exception, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        entry_point: str | None = None,
        distribution: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.entry_point = entry_point
        self.distribution = distribution
        self.error = error


class PluginLoadWarning(UserWarning):
    """An entry-point plugin was skipped because it could not be loaded."""


@dataclass(frozen=True)
class PluginInfo:
    """What :meth:`PluginManager.list_plugins` reports about one registered plugin.

    ``source`` is ``"entry point"`` (installed package), ``"built-in"`` (part of hookline) or
    ``"local"`` (registered by code: a plugin object, a :class:`Callback` or a function).
    """

    name: str
    source: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


class _FunctionCallback:
    """Holds one plain function as the implementation of one hook (see ``add_callback``)."""

    def __init__(self, event: str, function: Callable[..., Any]) -> None:
        setattr(self, event, function)


def _dist_label(dist: importlib.metadata.Distribution | None) -> str:
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _names_from_env(variable: str) -> set[str] | None:
    """Comma-separated names from ``variable``; None when it is unset, empty set when empty."""
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _is_builtin(plugin: object) -> bool:
    """Whether a plugin (module, class or instance) is defined inside the hookline package."""
    if isinstance(plugin, ModuleType) or inspect.isclass(plugin):
        module = plugin.__name__ if isinstance(plugin, ModuleType) else plugin.__module__
    else:
        module = type(plugin).__module__
    return module.partition(".")[0] == "hookline"


class PluginManager(pluggy.PluginManager):
    """hookline's plugin manager (a :class:`pluggy.PluginManager` for project ``hookline``)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self._hook_names = frozenset(
            name
            for name, caller in vars(self.hook).items()
            if isinstance(caller, pluggy.HookCaller)
        )
        self._dispatch: dict[str, pluggy.HookCaller] = {}
        self._entry_point_dists: dict[str, importlib.metadata.Distribution] = {}
        self._callbacks: dict[tuple[str, Callable[..., Any]], str] = {}
        #: This process's rank; on other ranks than zero, the hooks of rank-zero-only plugins
        #: (``rank_zero_only = True``) are left out of the dispatch table.
        self.rank = env_rank()
        #: Problems met while loading entry-point plugins (those skipped, outside strict mode).
        self.load_errors: list[PluginLoadError] = []
        # the plugin being registered and its parsed attributes: validation parses them
        # first, then pluggy's register asks again (a static lookup per attribute is costly)
        self._parsing: tuple[Any, dict[str, pluggy.HookimplOpts | None]] | None = None

    # -- the dispatch table --------------------------------------------------------------------

    @property
    def hook_names(self) -> frozenset[str]:
        """The names of every hook in the catalog."""
        return self._hook_names

    @property
    def dispatch(self) -> Mapping[str, pluggy.HookCaller]:
        """Hook name to caller, for the hooks that have at least one implementation due a call.

        A live view: it is updated in place on every register/unregister and configuration,
        so a loop may hold it and test ``name in dispatch`` before building a call's arguments.
        """
        return self._dispatch

    def call(self, hook_name: str, /, **kwargs: Any) -> list[Any]:
        """Call a hook through the dispatch table: no pluggy call when it has no implementation.

        Returns the implementations' results (an empty list when there are none).
        """
        caller = self._dispatch.get(hook_name)
        if caller is None:
            return []
        result: list[Any] = caller(**kwargs)
        return result

    def _refresh_dispatch(self) -> None:
        """Rebuild the table: per hook, the implementations that are due a call, leaving out
        rank-zero-only plugins on other ranks and the hooks plugins declare idle."""
        idle: dict[int, frozenset[str]] = {}
        for plugin in self.get_plugins():
            idle_hooks = getattr(plugin, "idle_hooks", None)
            if callable(idle_hooks):
                idle[id(plugin)] = frozenset(idle_hooks())
        table: dict[str, pluggy.HookCaller] = {}
        for name in self._hook_names:
            caller: pluggy.HookCaller = getattr(self.hook, name)
            impls = caller.get_hookimpls()
            if not impls or caller.is_historic():
                continue
            if name not in SETTINGS_HOOKS:
                skipped = [
                    impl.plugin for impl in impls
                    if (self.rank != 0 and is_rank_zero_only(impl.plugin))
                    or name in idle.get(id(impl.plugin), ())
                ]
                if len(skipped) == len(impls):
                    continue
                if skipped:
                    caller = self.subset_hook_caller(name, skipped)
            table[name] = caller
        self._dispatch.clear()  # in place: holders of ``dispatch`` see the change
        self._dispatch.update(table)

    def set_rank(self, rank: int) -> None:
        """Tell the manager this process's rank (read from ``RANK`` when it was created)."""
        if rank != self.rank:
            self.rank = rank
            self._refresh_dispatch()

    # -- registration --------------------------------------------------------------------------

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        """Find hook implementations: decorated ones, undecorated methods of a
        :class:`Callback` named after hooks, and functions given to ``add_callback``.
        Aliases are mapped to their hook through ``specname``."""
        if name.startswith("__") and name.endswith("__"):
            return None  # no hook has a special-method name
        if self._parsing is not None and self._parsing[0] is plugin:
            parsed = self._parsing[1]
            if name not in parsed:
                parsed[name] = self._parse(plugin, name)
            return parsed[name]
        return self._parse(plugin, name)

    def _parse(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None:
            if not isinstance(plugin, Callback | _FunctionCallback):
                return None
            if name not in self._hook_names and name not in ALIASES:
                return None
            if not callable(inspect.getattr_static(plugin, name, None)):
                return None
            opts = {
                "wrapper": False,
                "hookwrapper": False,
                "optionalhook": False,
                "tryfirst": False,
                "trylast": False,
                "specname": None,
            }
        if name in ALIASES and not opts.get("specname"):
            opts = {**opts, "specname": ALIASES[name]}
        return opts

    def get_canonical_name(self, plugin: Any) -> str:
        """A readable default name: a module's name, else the plugin's class name."""
        if isinstance(plugin, ModuleType) or inspect.isclass(plugin):
            return str(plugin.__name__)
        return type(plugin).__name__

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register a plugin (module, class or instance) and return its name.

        Each implementation is checked against the catalog first; on any problem this raises
        :class:`PluginValidationError` and nothing is registered.  Returns ``None`` when the
        name is blocked.  Without ``name``, a second instance of a class gets ``Name-2``.
        """
        if name is None:
            name = self._free_name(self.get_canonical_name(plugin))
        if self.is_blocked(name):
            return None
        self._parsing = (plugin, {})
        try:
            self._validate(plugin, name)
            registered = self._register_validated(plugin, name)
        finally:
            self._parsing = None
        self._refresh_dispatch()
        if registered is not None:
            self.hook.on_plugin_registered.call_historic(
                kwargs={"plugin": plugin, "manager": self}
            )
        return registered

    def _register_validated(self, plugin: Any, name: str) -> str | None:
        try:
            return super().register(plugin, name)
        except pluggy.PluginValidationError as error:
            # pluggy before 1.7 keeps the name after a validation error: take it back.
            if self.get_plugin(name) is plugin:
                super().unregister(plugin, name)
            raise PluginValidationError(plugin, str(error)) from error

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        """Unregister a plugin by object or name; its hooks stop firing at once."""
        removed = super().unregister(plugin, name)
        self._refresh_dispatch()
        return removed

    def _free_name(self, base: str) -> str:
        if self.get_plugin(base) is None:
            return base
        index = 2
        while self.get_plugin(f"{base}-{index}") is not None:
            index += 1
        return f"{base}-{index}"

    def _validate(self, plugin: Any, name: str) -> None:
        for attr in dir(plugin):
            opts = self.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                if isinstance(plugin, Callback) and attr.startswith("on_"):
                    self._unknown_hook(plugin, name, attr, attr)
                continue
            hook_name = opts.get("specname") or attr
            caller = getattr(self.hook, hook_name, None)
            if caller is None or not caller.has_spec():
                if opts.get("optionalhook"):
                    continue
                self._unknown_hook(plugin, name, attr, hook_name)
            self._check_arguments(plugin, name, hook_name, getattr(plugin, attr))

    def _unknown_hook(self, plugin: Any, name: str, attr: str, hook_name: str) -> None:
        hint = closest(hook_name, set(self._hook_names) | set(ALIASES))
        fix = f"did you mean {hint!r}?" if hint else "run `hookline hooks` for the catalog."
        raise PluginValidationError(
            plugin, f"plugin {name!r}: {attr!r} is not a hookline hook ({hook_name!r}); {fix}"
        )

    def _check_arguments(
        self, plugin: Any, name: str, hook_name: str, function: Callable[..., Any]
    ) -> None:
        spec = getattr(self.hook, hook_name).spec
        offered = tuple(spec.argnames)
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

    # -- plain-function callbacks --------------------------------------------------------------

    def add_callback(self, event: str, function: Callable[..., Any]) -> str:
        """Register ``function`` as an implementation of the hook (or alias) ``event``.

        The function takes any subset of the hook's arguments by name, e.g.
        ``add_callback("on_train_epoch_end", lambda trainer: print(trainer.epoch))``.
        Returns the name it was registered under.
        """
        if not (inspect.isfunction(function) or inspect.ismethod(function)):
            raise TypeError(
                f"add_callback({event!r}, ...) needs a function or method, got {function!r}"
            )
        if (event, function) in self._callbacks:
            raise ValueError(f"{function!r} is already a callback for {event!r}")
        if event not in self._hook_names and event not in ALIASES:
            hint = closest(event, set(self._hook_names) | set(ALIASES))
            fix = f"; did you mean {hint!r}?" if hint else ""
            raise PluginValidationError(function, f"unknown hook {event!r}{fix}")
        plugin_name = self._free_name(f"callback:{event}:{function.__qualname__}")
        self.register(_FunctionCallback(event, function), plugin_name)
        self._callbacks[(event, function)] = plugin_name
        return plugin_name

    def remove_callback(self, event: str, function: Callable[..., Any]) -> None:
        """Remove a function added with :meth:`add_callback` for ``event``."""
        plugin_name = self._callbacks.pop((event, function), None)
        if plugin_name is None:
            raise ValueError(f"{function!r} is not a callback for {event!r}")
        self.unregister(name=plugin_name)

    # -- entry points --------------------------------------------------------------------------

    def load_entrypoint_plugins(
        self,
        only: Iterable[str] | None = None,
        block: Iterable[str] = (),
        strict: bool = False,
    ) -> list[str]:
        """Load the plugins that installed distributions declare in the ``hookline`` group.

        An entry point may name a module, an object, or a class (instantiated without
        arguments).  Each is loaded on its own: one that fails to import or to register is
        reported with its distribution, warned about (:class:`PluginLoadWarning`), recorded in
        :attr:`load_errors` and skipped; with ``strict=True`` it raises
        :class:`PluginLoadError` instead.

        :param only: load only these entry-point names (an empty list loads none).  Defaults to
            the comma list in ``HOOKLINE_PLUGINS`` when that variable is set, else all.
        :param block: names never to load (they are blocked for later registration too), in
            addition to those in ``HOOKLINE_DISABLE_PLUGINS``.
        :param strict: turn every load problem into an error.
        :returns: the names of the plugins loaded by this call.
        """
        import importlib.metadata  # only discovery needs it: keeps `import hookline` light

        wanted = _names_from_env(ONLY_ENV) if only is None else set(only)
        for name in set(block) | (_names_from_env(DISABLE_ENV) or set()):
            self.set_blocked(name)
        loaded: list[str] = []
        seen: set[str] = set()
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if wanted is not None and entry_point.name not in wanted:
                continue
            if entry_point.name in seen:
                continue
            seen.add(entry_point.name)
            if self.is_blocked(entry_point.name) or self.has_plugin(entry_point.name):
                continue
            dist = entry_point.dist
            try:
                target = entry_point.load()
                plugin = target() if inspect.isclass(target) else target
                self.register(plugin, name=entry_point.name)
            except Exception as error:
                self._report(
                    PluginLoadError(
                        f"plugin {entry_point.name!r} ({entry_point.value}, from "
                        f"{_dist_label(dist)}) could not be loaded: "
                        f"{type(error).__name__}: {error}",
                        entry_point=entry_point.name,
                        distribution=_dist_label(dist),
                        error=error,
                    ),
                    strict,
                )
                continue
            if dist is not None:
                self._entry_point_dists[entry_point.name] = dist
            loaded.append(entry_point.name)
        for missing in sorted((wanted or set()) - seen):
            self._report(PluginLoadError(f"plugin {missing!r} is not installed"), strict)
        return loaded

    def _report(self, problem: PluginLoadError, strict: bool) -> None:
        if strict:
            raise problem from problem.error
        self.load_errors.append(problem)
        warnings.warn(f"hookline: {problem}; skipped", PluginLoadWarning, stacklevel=3)

    # -- listing -------------------------------------------------------------------------------

    def list_plugins(self) -> list[PluginInfo]:
        """Every registered plugin with its source, distribution, version and hooks."""
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted({caller.name for caller in self.get_hookcallers(plugin) or ()}))
            dist = self._entry_point_dists.get(name)
            if dist is not None:
                info = PluginInfo(name, "entry point", dist.metadata["Name"], dist.version, hooks)
            elif not isinstance(plugin, _FunctionCallback) and _is_builtin(plugin):
                info = PluginInfo(name, "built-in", "hookline", _hookline_version(), hooks)
            else:
                info = PluginInfo(name, "local", None, None, hooks)
            infos.append(info)
        return infos

    def blocked_names(self) -> list[str]:
        """The plugin names that are blocked from registering."""
        return sorted(name for name, plugin in self.list_name_plugin() if plugin is None)

    # -- settings ------------------------------------------------------------------------------

    def options(self, values: Mapping[str, Any] = MappingProxyType({})) -> Options:
        """Every setting the registered plugins accept, built-in flags included.

        A value in ``values`` named after a built-in's flag (see
        :data:`hookline.plugins.BUILTINS`) first registers that plugin (true) or unregisters it
        (false), so that its own options count.  Fires ``hookline_add_options``.
        """
        from hookline.plugins import BUILTINS

        flags = Options()
        for builtin in BUILTINS:
            flags.add(builtin.flag, False, help=builtin.help, owner="hookline")
        chosen = flags.resolve({name: value for name, value in values.items() if name in flags})
        for builtin in BUILTINS:
            if builtin.flag in values and chosen[builtin.flag] != self.has_plugin(builtin.flag):
                if chosen[builtin.flag]:
                    self.register(builtin.create(), builtin.flag)
                else:
                    self.unregister(name=builtin.flag)
        options = Options()
        for flag in flags:
            options.add(flag.name, self.has_plugin(flag.name), help=flag.help, owner=flag.owner)
        self.call("hookline_add_options", options=options)
        return options

    def configure(self, values: Mapping[str, Any]) -> Settings:
        """Check ``values`` against :meth:`options` and hand the result to the plugins
        (``hookline_configure``).

        :raises hookline.settings.SettingsError: for an unknown setting or a wrong type.
        """
        settings = self.options(values).resolve(values)
        self.call("hookline_configure", settings=settings)
        self._refresh_dispatch()  # settings may have made hooks idle (or busy again)
        return settings


def _hookline_version() -> str:
    from hookline import __version__

    return __version__


def default_manager(strict: bool = False) -> PluginManager:
    """A new :class:`PluginManager` with the installed entry-point plugins loaded.

    ``HOOKLINE_PLUGINS`` and ``HOOKLINE_DISABLE_PLUGINS`` choose which; ``strict`` makes a
    plugin that fails to load an error.
    """
    manager = PluginManager()
    manager.load_entrypoint_plugins(strict=strict)
    return manager
