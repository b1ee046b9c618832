"""hookline's plugin manager: :class:`pluggy.PluginManager` for project ``hookline``, with
validation at registration, callbacks, aliases, entry points, listing and a dispatch table.

Call order, as pluggy defines it: implementations run last-registered first; ``tryfirst=True``
moves one to the front and ``trylast=True`` to the back (among themselves, again
last-registered first); ``wrapper=True`` implementations run around all of them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from hookline import hookspecs
from hookline.distributed import env_rank
from hookline.errors import UserError, add_note
from hookline.manager.attributes import (
    PluginTraits,
    computed_setting,
    forget_class_reads,
    hookable,
    own_attributes,
    plugin_traits,
    static_value,
)
from hookline.manager.callback import PLAIN_IMPL, Callback, FunctionCallback
from hookline.manager.compat import API_ATTRIBUTE, HookDeprecationWarning, incompatibility
from hookline.manager.defaults import offered_arguments
from hookline.manager.dispatch import DueHook, due_callers
from hookline.manager.entry_points import distribution_label, load_entry_points, report
from hookline.manager.errors import PluginLoadError, PluginValidationError, UnknownHookError
from hookline.manager.faults import (
    DEFAULT_SETTING,
    SETTING,
    FaultPolicy,
    PluginFailure,
    culprit,
)
from hookline.manager.filters import FilterTable, filter_of
from hookline.manager.listing import PluginInfo, hookline_version, is_builtin
from hookline.manager.validation import (
    check_implementation,
    check_plugin,
    check_specs,
    unknown_hook_hint,
)
from hookline.settings import Options, Settings, SettingsError

if TYPE_CHECKING:
    import importlib.metadata


#: What the validation of a plugin class depends on: each hook with the arguments it offers
#: and whether it is historic, and each other name a hook answers to.
_CatalogKey = tuple[frozenset[tuple[str, tuple[str, ...], bool]], frozenset[tuple[str, str]]]
#: Parsed attributes per (plugin class, hook catalog), shared by every manager.
_CLASS_PARSES: dict[tuple[type, _CatalogKey], dict[str, pluggy.HookimplOpts | None]] = {}
#: The entry of a class's parses that says it passed validation (no attribute has this name).
_VALID = " validated"
#: The hook specifications parsed from :mod:`hookline.hookspecs`, by attribute name.
_CATALOG_SPECS: dict[str, pluggy.HookspecOpts | None] = {}
#: The attribute in which a plugin declares hooks of its own (a class or module of
#: ``@hookline.hookspec`` functions).
HOOKSPECS_ATTRIBUTE = "hookspecs"


class PluginManager(pluggy.PluginManager):
    """hookline's plugin manager (a :class:`pluggy.PluginManager` for project ``hookline``).

    What it adds to pluggy's:

    * :class:`~hookline.Callback` methods and :meth:`add_callback` functions need no decorator;
    * aliases (:data:`hookline.hookspecs.ALIASES`) resolved once at registration;
    * every implementation checked at registration; a failed registration leaves nothing;
    * :meth:`load_entrypoint_plugins` and :meth:`list_plugins`;
    * :attr:`dispatch`, the hooks due a call, so that an empty hook costs no pluggy call, and
      :meth:`call`, which refuses a name that is no hook;
    * the fault policy (:mod:`hookline.manager.faults`): a failing plugin whose policy is
      ``disable`` is reported, recorded in :attr:`failures` and unregistered, and the run
      goes on;
    * custom events: a plugin with a ``hookspecs`` attribute (a class of
      ``@hookline.hookspec`` functions) adds those hooks when it is registered; they are then
      dispatched, validated and listed like the catalog's (:meth:`add_hookspecs`);
    * event filters (:mod:`hookline.manager.filters`): ``@hookline.every(steps=N)`` and
      ``@hookline.once(...)`` implementations stay out of the dispatch table until due;
    * compatibility (:mod:`hookline.manager.compat`): a plugin's ``hookline_api`` range is
      checked, and renamed hooks keep working under their old names with a warning;
    * plugin state: each plugin with a ``state_dict`` has a unique state key (its
      ``state_key`` attribute, else its name; :meth:`stateful_plugins`).
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self._hook_names: frozenset[str] = frozenset()
        self._catalog_key: _CatalogKey = (frozenset(), frozenset())
        #: Every other name a hook answers to: aliases and renamed hooks' old names (the
        #: catalog's and those of plugins' hooks, filled by add_hookspecs).
        self._aliases: dict[str, str] = {}
        self._renamed: dict[str, str] = {}
        #: The hooks plugins declared, with the name of the plugin that declared each.
        self.custom_hooks: dict[str, str] = {}
        self._dispatch: dict[str, DueHook] = {}
        self._filters = FilterTable()
        self._spec_sources: list[Any] = []  # the objects whose hookspecs were added
        self._entry_point_dists: dict[str, importlib.metadata.Distribution | None] = {}
        self._callbacks: dict[tuple[str, Callable[..., Any]], str] = {}
        #: This process's rank; on other ranks than zero, the hooks of rank-zero-only plugins
        #: (``rank_zero_only = True``) are left out of the dispatch table.
        self.rank = env_rank()
        #: Problems met while loading entry-point plugins (those skipped, outside strict mode).
        self.load_errors: list[PluginLoadError] = []
        #: Whether a plugin problem is an error (set by :meth:`load_entrypoint_plugins`).
        self.strict = False
        # the plugin being registered and its parsed attributes: validation parses them
        # first, then pluggy's register asks again (a static lookup per attribute is costly)
        self._parsing: tuple[Any, dict[str, pluggy.HookimplOpts | None]] | None = None
        self._faults = FaultPolicy(self)
        #: Each registered plugin's traits, by ``id``: read as it registered, and again when
        #: the plugins are configured.
        self._traits: dict[int, PluginTraits] = {}
        self.add_hookspecs(hookspecs)

    @property
    def failures(self) -> list[PluginFailure]:
        """The plugins disabled by a failure (policy ``disable``), in order: name, hook, error."""
        return self._faults.failures

    def error_policy(self, name: str) -> str:
        """The fault policy in force for the plugin registered as ``name``."""
        return self._faults.policy(name, self.get_plugin(name))

    def failure_of(self, error: BaseException) -> PluginFailure | None:
        """The plugin at fault for ``error`` (an exception that ended a phase): the registered
        plugin whose hook implementation raised it, found in its traceback
        (:func:`~hookline.manager.faults.culprit`), with the hook, the error and, for an
        installed plugin, its distribution.  None when no plugin's hook raised it, for a
        :class:`~hookline.UserError` (a bad setting or file is the user's to fix, whichever
        plugin noticed it), and for what is no ``Exception`` (``KeyboardInterrupt``,
        ``SystemExit``: an interruption, whatever code it interrupted)."""
        blamable = isinstance(error, Exception) and not isinstance(error, UserError)
        found = culprit(self, error) if blamable else None
        if found is None:
            return None
        name, hook = found
        return PluginFailure.of(name, hook, error, self.entry_point_plugins().get(name))

    # -- the dispatch table --------------------------------------------------------------------

    @property
    def hook_names(self) -> frozenset[str]:
        """The names of every hook: the catalog's and those plugins declared (aliases not
        included)."""
        return self._hook_names

    @property
    def aliases(self) -> Mapping[str, str]:
        """Every other name a hook answers to (aliases, renamed hooks' old names) -> hook."""
        return MappingProxyType(self._aliases)

    def add_hookspecs(self, module_or_class: Any) -> None:
        """Add hook specifications (functions marked ``@hookline.hookspec``) after creation:
        the new hooks are dispatched, validated and listed like the catalog's.  A
        ``RENAMED`` mapping next to them (old name to new) keeps old names working, with a
        :class:`HookDeprecationWarning`; an ``ALIASES`` mapping adds other names."""
        try:
            super().add_hookspecs(module_or_class)
            for table in ("ALIASES", "RENAMED"):
                self._aliases.update(static_value(module_or_class, table) or {})
            self._renamed.update(static_value(module_or_class, "RENAMED") or {})
        finally:  # pluggy adds a hook before it checks the implementations registered for it
            names = frozenset(
                name for name, caller in vars(self.hook).items()
                if isinstance(caller, pluggy.HookCaller) and caller.has_spec()
            )
            added, self._hook_names = names - self._hook_names, names
            self._catalog_key = self._describe_catalog()
            self._refresh_dispatch(added)

    def _describe_catalog(self) -> _CatalogKey:
        """The key under which a class validated with this manager's hooks is valid."""
        callers = [getattr(self.hook, name) for name in self._hook_names]
        return (
            frozenset(
                (caller.name, offered_arguments(caller.spec), caller.is_historic())
                for caller in callers
            ),
            frozenset(self._aliases.items()),
        )

    @property
    def dispatch(self) -> Mapping[str, DueHook]:
        """Hook name to its due implementations (:class:`~hookline.manager.dispatch.DueHook`,
        callable with the hook's arguments), for the hooks that have at least one
        implementation due a call.

        A live view: it is updated in place on every register/unregister and configuration,
        so a loop may hold it and test ``name in dispatch`` before building a call's arguments.
        """
        return self._dispatch

    def call(self, hook_name: str, /, **kwargs: Any) -> list[Any]:
        """Call a hook (or alias) through the dispatch table: no pluggy call when it has no
        implementation.  Returns the implementations' results, ``[]`` when there are none.

        :raises UnknownHookError: when ``hook_name`` is neither a hook nor an alias (checked
            only when the table has no entry, so a hook with implementations pays nothing).
        """
        due = self._dispatch.get(hook_name)
        if due is None:
            if hook_name in self._hook_names:
                return []
            if hook_name in self._aliases:
                return self.call(self._aliases[hook_name], **kwargs)
            fix = unknown_hook_hint(hook_name, self._hook_names, self._aliases)
            raise UnknownHookError(f"{hook_name!r} is not a hookline hook; {fix}")
        hookexec, name, impls, firstresult, defaults = due
        if defaults:  # the specification's defaults, for the arguments the call omits
            kwargs = {**defaults, **kwargs}
        result: list[Any] = hookexec(name, impls, kwargs, firstresult)
        return result

    def call_every(self, hook_name: str, /, **kwargs: Any) -> list[Any]:
        """Like :meth:`call`, but every implementation runs even when one raises; the first
        error is raised afterwards (the others attached to it as notes).  For the hooks that
        release what plugins hold (``teardown``, ``on_exception``): one plugin's failure must
        not keep the others from closing their files and runs.  Still one pluggy call, so
        hook-call monitoring (``--trace-hooks``, the test recorder) sees it as usual."""
        caller = self._dispatch.get(hook_name)
        if caller is None:
            return self.call(hook_name, **kwargs)  # no implementation, or not a hook: raises
        errors: list[tuple[str, Exception]] = []
        with self._each_implementation(
            caller.get_hookimpls(),
            lambda function, plugin_name: collect_errors(function, plugin_name, errors),
        ):
            results: list[Any] = caller(**kwargs)
        if errors:
            first = errors[0][1]
            for plugin_name, error in errors[1:]:
                add_note(first, f"hookline: {plugin_name}'s {hook_name} also failed: {error!r}")
            raise first
        return results

    @staticmethod
    @contextmanager
    def _each_implementation(
        impls: Iterable[pluggy.HookImpl],
        wrap: Callable[[Callable[..., Any], str], Callable[..., Any]],
    ) -> Iterator[None]:
        """For the duration of the block, each of ``impls`` (wrappers aside) runs as
        ``wrap(its function, its plugin's name)``."""
        replaced: list[tuple[pluggy.HookImpl, Callable[..., Any]]] = []
        for impl in impls:
            if not (impl.wrapper or impl.hookwrapper):
                replaced.append((impl, impl.function))
                setattr(impl, "function", wrap(impl.function, impl.plugin_name))  # noqa: B010
        try:
            yield
        finally:
            for impl, function in replaced:
                setattr(impl, "function", function)  # noqa: B010 - pluggy marks it Final

    def _refresh_dispatch(self, hook_names: Iterable[str] | None = None) -> None:
        """Rebuild the dispatch table's entries for ``hook_names`` (all hooks by default), in
        place: holders of :attr:`dispatch` see the change."""
        names = self._hook_names if hook_names is None else frozenset(hook_names)
        table = due_callers(self, names, self.rank, self._filters.not_due, self.plugin_traits)
        for name in names:
            self._dispatch.pop(name, None)
        self._dispatch.update(table)

    def refresh_dispatch(self) -> None:
        """Rebuild the dispatch table: for a plugin whose :meth:`~hookline.Callback.idle_hooks`
        changed mid-run (registration and configuration rebuild it anyway)."""
        self._refresh_dispatch()

    @property
    def has_filters(self) -> bool:
        """Whether any registered implementation has an event filter."""
        return bool(self._filters.filters)

    def filter_position(self, step: int | None, epoch: int | None) -> int:
        """Tell the manager where the training run is (optimizer step and 0-based epoch;
        None for both outside training), so that filtered implementations that are due enter
        the dispatch table and the others leave it.  Returns the next step at which to call
        again (-1: none).  The trainer calls it; nothing else needs to."""
        changed, following = self._filters.move(step, epoch)
        if changed:
            self._refresh_dispatch(changed)
        return following

    def add_hookcall_monitoring(
        self,
        before: Callable[[str, Sequence[pluggy.HookImpl], Mapping[str, Any]], None],
        after: Callable[
            [pluggy.Result[Any], str, Sequence[pluggy.HookImpl], Mapping[str, Any]], None
        ],
    ) -> Callable[[], None]:
        """pluggy's, with the dispatch table following: its entries call through the
        monitored executor from now on, and through the plain one again after the undo."""
        undo = super().add_hookcall_monitoring(before, after)
        self._refresh_dispatch()

        def undo_and_refresh() -> None:
            undo()
            self._refresh_dispatch()

        return undo_and_refresh

    def set_rank(self, rank: int) -> None:
        """Tell the manager this process's rank (read from ``RANK`` when it was created)."""
        if rank != self.rank:
            self.rank = rank
            self._refresh_dispatch()

    # -- registration --------------------------------------------------------------------------

    def parse_hookspec_opts(self, module_or_class: Any, name: str) -> pluggy.HookspecOpts | None:
        """pluggy's, remembered for hookline's own catalog (every manager reads the same)."""
        if module_or_class is not hookspecs:
            return super().parse_hookspec_opts(module_or_class, name)
        if name not in _CATALOG_SPECS:
            _CATALOG_SPECS[name] = super().parse_hookspec_opts(module_or_class, name)
        opts = _CATALOG_SPECS[name]
        return None if opts is None else opts.copy()

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
            opts = parsed[name]
            return None if opts is None else opts.copy()  # pluggy keeps one per implementation
        return self._parse(plugin, name)

    def _class_parses(self, plugin: Any) -> dict[str, pluggy.HookimplOpts | None] | None:
        """The parsed attributes that ``plugin`` shares with every instance of its class, under
        this catalog (kept across managers: registering the built-ins again costs no static
        lookups), or None when the plugin is a module or class, or holds callables of its own
        (functions given to ``add_callback``, say), which only it can say."""
        if isinstance(plugin, ModuleType) or inspect.isclass(plugin):
            return None
        if any(callable(value) for value in own_attributes(plugin).values()):
            return None
        return _CLASS_PARSES.setdefault((type(plugin), self._catalog_key), {})

    def _parse(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        if not hookable(plugin, name):
            return None  # found statically, as pluggy 1.7 does (before it, pluggy runs getattr)
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None:
            if not isinstance(plugin, Callback | FunctionCallback):
                return None
            if name not in self._hook_names and name not in self._aliases:
                return None
            opts = PLAIN_IMPL.copy()  # pluggy keeps it: one per implementation
        if name in self._aliases and not opts.get("specname"):
            opts = {**opts, "specname": self._aliases[name]}
            if name in self._renamed:
                warnings.warn(
                    f"hookline: {self.get_canonical_name(plugin)} implements {name!r}, which "
                    f"was renamed {self._renamed[name]!r}; it still works under the old name, "
                    "for now",
                    HookDeprecationWarning, stacklevel=2,
                )
        return opts

    def get_canonical_name(self, plugin: Any) -> str:
        """A readable default name: a module's name, else the plugin's class name."""
        if isinstance(plugin, ModuleType) or inspect.isclass(plugin):
            return str(plugin.__name__)
        return type(plugin).__name__

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register a plugin (module, class or instance) and return its name.

        Each implementation is checked against the catalog first; on any problem this raises
        :class:`PluginValidationError`, naming the hook, and nothing is registered.  Returns
        ``None`` when the name is blocked.  Without ``name``, a second instance of a class gets
        ``Name-2``.  The attributes hookline reads from the plugin (``hookline_api``,
        ``hookspecs``, ``state_key``, ...) are read statically, as pluggy finds hooks
        (:mod:`hookline.manager.attributes`): ``__getattr__`` and properties are not run.

        An installed plugin given explicitly (another instance of an entry-point plugin's
        class, or the very module or object) is registered once: it takes the place of the
        copy loaded from the entry point, under the entry point's name (so that its flag,
        its state key and its listing stay those of the installed plugin).
        """
        installed = self._installed_copy(plugin)
        if installed is not None:
            if self.get_plugin(installed) is plugin:
                return installed
            self.unregister(name=installed)
            name = installed if name is None else name
        if name is None:
            name = self._free_name(self.get_canonical_name(plugin))
        if self.is_blocked(name):
            return None
        computed = computed_setting(plugin)
        if computed is not None:
            attribute, kind = computed
            raise PluginValidationError(
                plugin,
                f"plugin {name!r}: its {attribute!r} is a {kind}, which hookline does not run "
                "(it reads a plugin's attributes statically, as pluggy finds hooks); make it "
                "a plain attribute, set on the class or in __init__",
            )
        problem = incompatibility(static_value(plugin, API_ATTRIBUTE))
        if problem is not None:
            raise PluginValidationError(plugin, f"plugin {name!r} {problem}")
        specs = static_value(plugin, HOOKSPECS_ATTRIBUTE)
        if specs is not None:
            self._add_plugin_hookspecs(specs, name)
        traits = plugin_traits(plugin)
        self._check_state_key(plugin, name, traits)
        shared = self._class_parses(plugin)
        self._parsing = (plugin, shared if shared is not None else {})
        try:
            pending: list[tuple[str, str]] = []
            # a class checked once under this catalog is valid for all its instances
            if shared is None or _VALID not in shared:
                pending = check_plugin(self, plugin, name)
                if shared is not None and not pending:
                    shared[_VALID] = None
            self._traits[id(plugin)] = traits  # a historic replay may already call it
            registered = self._register_validated(plugin, name)
            if registered is not None and pending:
                self._check_after_replay(plugin, registered, pending)
        finally:
            self._parsing = None
            if self.get_name(plugin) is None:  # refused or failed
                self._traits.pop(id(plugin), None)
        if registered is not None:  # only the hooks it implements change
            callers = self.get_hookcallers(plugin) or []
            self._record_filters(plugin, callers)
            self._refresh_dispatch([caller.name for caller in callers])
            self._faults.apply(plugin, callers)
            self.hook.on_plugin_registered.call_historic(
                kwargs={"plugin": plugin, "manager": self}
            )
        return registered

    def _installed_copy(self, plugin: Any) -> str | None:
        """The name of the registered entry-point plugin that ``plugin`` is, or is another
        instance of the class of; None when there is none."""
        instance = not (isinstance(plugin, ModuleType) or inspect.isclass(plugin))
        for name in self._entry_point_dists:
            loaded = self.get_plugin(name)
            if loaded is plugin or (
                instance and loaded is not None and type(loaded) is type(plugin)
            ):
                return name
        return None

    def _register_validated(self, plugin: Any, name: str) -> str | None:
        try:
            return super().register(plugin, name)
        except pluggy.PluginValidationError as error:
            # pluggy before 1.7 keeps the name after a validation error, and pluggy 1.7 the
            # implementations added before a problem that a historic replay revealed
            if self.get_plugin(name) is plugin:
                super().unregister(plugin, name)
            raise PluginValidationError(plugin, str(error)) from error

    def _check_after_replay(
        self, plugin: Any, name: str, pending: Sequence[tuple[str, str]]
    ) -> None:
        """Check the implementations that :func:`check_plugin` left pending (their hooks had
        no specification before the replay of a historic hook to ``plugin``, which may have
        added it); on a problem, unregister ``plugin`` and raise it."""
        try:
            for attr, hook in pending:
                check_implementation(self, plugin, name, attr, hook)
        except PluginValidationError:
            super().unregister(plugin, name)
            for _, hook in pending:  # the callers pluggy made for hooks that are still none
                caller = getattr(self.hook, hook, None)
                if caller is not None and not caller.has_spec() and not caller.get_hookimpls():
                    delattr(self.hook, hook)
            self._refresh_dispatch()
            raise

    def _add_plugin_hookspecs(self, specs: Any, name: str) -> None:
        """Add the hooks a plugin declares (its ``hookspecs``), once per declaring object."""
        if specs is hookspecs or any(specs is source for source in self._spec_sources):
            return
        known = self._hook_names
        problem = check_specs(self, specs)
        if problem is not None:
            raise PluginValidationError(specs, f"plugin {name!r}: {problem}")
        self.add_hookspecs(specs)
        self._spec_sources.append(specs)
        self.custom_hooks.update(dict.fromkeys(self._hook_names - known, name))

    def _record_filters(self, plugin: Any, callers: Sequence[pluggy.HookCaller]) -> None:
        for caller in callers:
            for impl in caller.get_hookimpls():
                event_filter = filter_of(impl.function) if impl.plugin is plugin else None
                if event_filter is not None:
                    self._filters.add(plugin, caller.name, event_filter)

    def _hooks_of(self, plugin: Any) -> list[str]:
        """The hooks ``plugin`` implements."""
        return [caller.name for caller in self.get_hookcallers(plugin) or ()]

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        """Unregister a plugin by object or name; its hooks stop firing at once."""
        if plugin is None and name is not None:
            plugin = self.get_plugin(name)
        hooks = self._hooks_of(plugin)
        removed = super().unregister(plugin, name)
        self._traits.pop(id(removed), None)
        self._faults.forget(removed)
        self._filters.forget(removed)
        self._refresh_dispatch(hooks)
        return removed

    # -- plugin state --------------------------------------------------------------------------

    def plugin_traits(self, plugin: object) -> PluginTraits:
        """What hookline reads of ``plugin`` besides its hooks (:class:`PluginTraits`): as read
        when it registered or when the plugins were last configured, or now for a plugin that
        is not registered."""
        traits = self._traits.get(id(plugin))
        return traits if traits is not None else plugin_traits(plugin)

    def stateful_plugins(self) -> dict[str, Any]:
        """State key to plugin, for every registered plugin that has a ``state_dict()``."""
        found = {}
        for name, plugin in self.list_name_plugin():
            traits = self.plugin_traits(plugin) if plugin is not None else None
            if traits is not None and traits.state_dict is not None:
                found[_state_key(traits, name)] = plugin
        return found

    def _check_state_key(self, plugin: Any, name: str, traits: PluginTraits) -> None:
        if traits.state_dict is None:
            return
        key = _state_key(traits, name)
        holder = self.stateful_plugins().get(key)
        if holder is not None and holder is not plugin:
            raise PluginValidationError(
                plugin,
                f"plugin {name!r}: its state would be saved under {key!r}, the key of another "
                "registered plugin's state; give each instance its own state_key attribute",
            )

    def _free_name(self, base: str) -> str:
        if self.get_plugin(base) is None:
            return base
        index = 2
        while self.get_plugin(f"{base}-{index}") is not None:
            index += 1
        return f"{base}-{index}"

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
        if event not in self._hook_names and event not in self._aliases:
            fix = unknown_hook_hint(event, self._hook_names, self._aliases)
            raise PluginValidationError(function, f"unknown hook {event!r}; {fix}")
        plugin_name = self._free_name(f"callback:{event}:{function.__qualname__}")
        self.register(FunctionCallback(event, function), plugin_name)
        self._callbacks[(event, function)] = plugin_name
        return plugin_name

    def remove_callback(self, event: str, function: Callable[..., Any]) -> None:
        """Remove a function added with :meth:`add_callback` for ``event``."""
        plugin_name = self._callbacks.pop((event, function), None)
        if plugin_name is None:
            raise ValueError(f"{function!r} is not a callback for {event!r}")
        self.unregister(name=plugin_name)

    # -- entry points and listing --------------------------------------------------------------

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
        :class:`PluginLoadError` instead.  A plugin asked for by name (``only``, or
        ``HOOKLINE_PLUGINS``) that is not installed, fails to import or to register raises
        :class:`PluginLoadError` in any mode: the user named it.

        :param only: load only these entry-point names (an empty list loads none).  Defaults to
            the comma list in ``HOOKLINE_PLUGINS`` when that variable is set, else all.
        :param block: names never to load (they are blocked for later registration too), in
            addition to those in ``HOOKLINE_DISABLE_PLUGINS``.
        :param strict: turn every load problem into an error.
        :returns: the names of the plugins loaded by this call.
        """
        self.strict = strict
        loaded = load_entry_points(self, only, block, strict)
        self._entry_point_dists.update(loaded)
        return list(loaded)

    def entry_point_plugins(self) -> dict[str, str]:
        """The plugins loaded from entry points (registered now or not), each with its
        distribution as ``name version``."""
        return {name: distribution_label(dist) for name, dist in self._entry_point_dists.items()}

    def refuse(self, name: str, reason: str) -> None:
        """Unregister the plugin registered as ``name`` and report why, naming its
        distribution: a :class:`PluginLoadWarning` (the plugin is skipped), or in strict mode
        a :class:`PluginLoadError`.  For a plugin that takes a name hookline reserves."""
        dist = self._entry_point_dists.pop(name, None)
        self.unregister(name=name)
        label = distribution_label(dist)
        report(self, PluginLoadError(f"plugin {name!r} (from {label}) {reason}",
                                     entry_point=name, distribution=label), self.strict)

    def list_plugins(self) -> list[PluginInfo]:
        """Every registered plugin with its source, distribution, version and hooks."""
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted({caller.name for caller in self.get_hookcallers(plugin) or ()}))
            if name in self._entry_point_dists:
                dist = self._entry_point_dists[name]
                label, version = (None, None) if dist is None else (
                    dist.metadata["Name"], dist.version
                )
                info = PluginInfo(name, "entry point", label, version, hooks)
            elif not isinstance(plugin, FunctionCallback) and is_builtin(plugin):
                info = PluginInfo(name, "built-in", "hookline", hookline_version(), hooks)
            else:
                info = PluginInfo(name, "local", None, None, hooks)
            infos.append(info)
        return infos

    def blocked_names(self) -> list[str]:
        """The plugin names that are blocked from registering."""
        return sorted(name for name, plugin in self.list_name_plugin() if plugin is None)

    # -- settings ------------------------------------------------------------------------------

    def options(self) -> Options:
        """Every setting the registered plugins declare (fires ``hookline_add_options``), and
        the manager's own ``plugin_errors`` (see :mod:`hookline.manager.faults`).  A setting
        declared without ``owner=`` is owned by the plugin that declared it (its registered
        name), as ``hookline settings`` shows."""
        options = Options()
        options.add(
            SETTING, DEFAULT_SETTING, owner="hookline",
            help="on a plugin failure: default, raise or disable; NAME:POLICY for one plugin",
        )

        def owned(function: Callable[..., Any], plugin_name: str) -> Callable[..., Any]:
            def declare(*args: Any, **kwargs: Any) -> Any:
                options.default_owner = plugin_name
                try:
                    return function(*args, **kwargs)
                finally:
                    options.default_owner = ""

            return declare

        with self._each_implementation(self.hook.hookline_add_options.get_hookimpls(), owned):
            self.call("hookline_add_options", options=options)
        return options

    def configure(self, values: Mapping[str, Any] = MappingProxyType({})) -> Settings:
        """Check ``values`` against :meth:`options` and hand the result to the plugins
        (``hookline_configure``).

        A plugin refuses a value by raising :class:`~hookline.SettingsError` (or a
        ``ValueError``, which becomes one naming the plugin): one line and exit status 2 on
        the command line.

        :raises hookline.settings.SettingsError: for an unknown setting, a wrong type or a
            value a plugin refuses.
        """
        settings = self.options().resolve(values)
        # read again: what a plugin was given between its registration and the run counts
        forget_class_reads()
        self._traits = {id(plugin): plugin_traits(plugin) for plugin in self.get_plugins()
                        if plugin is not None}
        self._faults.configure(settings)
        with self._each_implementation(
            self.hook.hookline_configure.get_hookimpls(), refusals_as_settings_errors
        ):
            self.call("hookline_configure", settings=settings)
        self._refresh_dispatch()  # settings may have made hooks idle (or busy again)
        return settings


def default_manager(strict: bool = False) -> PluginManager:
    """A new :class:`PluginManager` with the installed entry-point plugins loaded.

    ``HOOKLINE_PLUGINS`` and ``HOOKLINE_DISABLE_PLUGINS`` choose which; ``strict`` makes a
    plugin that fails to load an error.
    """
    manager = PluginManager()
    manager.load_entrypoint_plugins(strict=strict)
    return manager


def _state_key(traits: PluginTraits, name: str) -> str:
    """The plugin's ``state_key``, else ``name`` (the name it is registered under)."""
    key = traits.state_key
    return key if isinstance(key, str) and key else name


def refusals_as_settings_errors(
    function: Callable[..., Any], plugin_name: str
) -> Callable[..., Any]:
    """``function`` (a ``hookline_configure`` implementation) with a ``ValueError`` it raises
    turned into a :class:`SettingsError` that names the plugin."""

    def configure(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except SettingsError:
            raise
        except ValueError as error:
            raise SettingsError(f"plugin {plugin_name!r} refused its settings: {error}") from None

    return configure


def collect_errors(
    function: Callable[..., Any], plugin_name: str, errors: list[tuple[str, Exception]]
) -> Callable[..., Any]:
    """``function``, with an ``Exception`` it raises appended to ``errors`` instead."""

    def collecting(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            errors.append((plugin_name, error))
            return None

    return collecting
