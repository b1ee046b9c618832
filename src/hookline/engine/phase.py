"""What the four phases share: the plugin manager, the run state, the stop flag and the
guarantee that ``on_exception`` and ``teardown`` fire."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hookline.engine.task import Task
from hookline.errors import add_note
from hookline.manager import PluginManager, default_manager
from hookline.settings import Settings

T = TypeVar("T")


class Phase:
    """Base of :class:`Trainer`, :class:`Validator`, :class:`Predictor` and :class:`Exporter`.

    :param task: the framework task (see :class:`hookline.engine.task.Task`).
    :param plugins: plugins to register: modules, objects with ``@hookimpl`` methods or
        :class:`~hookline.Callback` instances.
    :param manager: the plugin manager to use; by default a new one with the installed
        entry-point plugins loaded (honouring ``HOOKLINE_PLUGINS``/``HOOKLINE_DISABLE_PLUGINS``).
    """

    #: The phase's name, as the command line and logs spell it.
    name: ClassVar[str] = ""

    def __init__(
        self,
        task: Task,
        plugins: Iterable[Any] = (),
        *,
        manager: PluginManager | None = None,
    ) -> None:
        self.task = task
        self.manager = manager if manager is not None else default_manager()
        for plugin in plugins:
            self.manager.register(plugin)
        #: The settings of the current run, as resolved by ``hookline_configure``.
        self.settings = Settings({})
        #: Every argument of the current run (the phase's own and the plugins' settings).
        self.args: dict[str, Any] = {}
        #: Metrics as floats: the epoch's for a trainer, the run's for a validator.
        self.metrics: dict[str, float] = {}
        #: Where the run writes its files (plugins write there; the engine never does).
        self.save_dir: Path | None = None
        #: What plugins report about the run, by key (the profile table under ``profile``,
        #: ...): the summary plugin adds each entry to ``summary.json``.  Emptied when a run
        #: starts.
        self.report: dict[str, Any] = {}
        self.should_stop = False
        self.stop_reason: str | None = None
        #: This process's rank and the number of processes (1 outside torch.distributed).
        self.rank = 0
        self.world_size = 1

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes files and talks to loggers (rank zero)."""
        return self.rank == 0

    def add_callback(self, event: str, function: Callable[..., Any]) -> str:
        """Register a plain function for a hook; see :meth:`PluginManager.add_callback`."""
        return self.manager.add_callback(event, function)

    def remove_callback(self, event: str, function: Callable[..., Any]) -> None:
        """Remove a function added with :meth:`add_callback`."""
        self.manager.remove_callback(event, function)

    def request_stop(self, reason: str) -> None:
        """Ask the phase to stop at the next check (after the current batch or epoch).

        The first reason given is kept; later requests do not overwrite it.
        """
        if not self.should_stop:
            self.should_stop = True
            self.stop_reason = reason

    def call(self, hook_name: str, /, **kwargs: Any) -> list[Any]:
        """Fire a hook through the manager's dispatch table (no pluggy call if nobody listens).

        Plugins use it to fire the events they own, e.g. ``on_model_save`` after writing a file.

        :raises hookline.manager.UnknownHookError: when ``hook_name`` is no hook or alias.
        """
        return self.manager.call(hook_name, **kwargs)

    def _configure(self, arguments: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        self.settings = self.manager.configure(settings)
        self.args = {**arguments, **self.settings}
        self.report = {}
        self.should_stop = False
        self.stop_reason = None

    def _join(self, *phases: Phase) -> None:
        """Take the rank and world size the task found in :meth:`Task.setup`."""
        for phase in (self, *phases):
            phase.rank, phase.world_size = self.task.rank, self.task.world_size
        self.manager.set_rank(self.task.rank)

    def _guarded(self, body: Callable[[], T]) -> T:
        """Run ``body``; on an exception fire ``on_exception``; fire ``teardown`` always, then
        release the task (``Task.teardown``, or ``Task.abort`` after an exception: no
        collective that another rank may never join).  Both hooks reach every plugin even when
        one of them raises (:meth:`PluginManager.call_every`)."""
        try:
            result = body()
        except BaseException as error:
            try:
                self.manager.call_every("on_exception", run=self, exception=error)
            except Exception as hook_error:
                add_note(error, f"hookline: an on_exception hook also failed: {hook_error!r}")
            try:
                self.manager.call_every("teardown", run=self)
            except Exception as hook_error:
                add_note(error, f"hookline: a teardown hook also failed: {hook_error!r}")
            self.task.abort()
            raise
        try:
            self.manager.call_every("teardown", run=self)
        finally:
            self.task.teardown()
        return result
