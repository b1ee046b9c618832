"""What the four phases share: the plugin manager, the run state, the stop flag and the
guarantee that ``on_exception`` and ``teardown`` fire."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from hookline.engine.task import Task
from hookline.errors import add_note
from hookline.manager import PluginManager
from hookline.run import Run

T = TypeVar("T")


class Phase(Run):
    """Base of :class:`Trainer`, :class:`Validator`, :class:`Predictor` and :class:`Exporter`:
    the run state of :class:`hookline.run.Run`, driven by hookline's own loop.

    :param task: the framework task (see :class:`hookline.engine.task.Task`).
    :param plugins: plugins to register: modules, objects with ``@hookimpl`` methods or
        :class:`~hookline.Callback` instances.
    :param manager: the plugin manager to use; by default a new, empty one: a bare phase runs
        exactly the plugins it is given.  (:class:`hookline.Model` and the command line load
        the installed plugins; pass ``manager=hookline.default_manager()`` for them here.)
    """

    task: Task

    def __init__(
        self,
        task: Task,
        plugins: Iterable[Any] = (),
        *,
        manager: PluginManager | None = None,
    ) -> None:
        super().__init__(task, manager if manager is not None else PluginManager())
        for plugin in plugins:
            self.manager.register(plugin)

    def add_callback(self, event: str, function: Callable[..., Any]) -> str:
        """Register a plain function for a hook; see :meth:`PluginManager.add_callback`."""
        return self.manager.add_callback(event, function)

    def remove_callback(self, event: str, function: Callable[..., Any]) -> None:
        """Remove a function added with :meth:`add_callback`."""
        self.manager.remove_callback(event, function)

    def _configure(self, arguments: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        self.settings = self.manager.configure(settings)
        self.args = {**arguments, **self.settings.public()}  # secrets redacted
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
