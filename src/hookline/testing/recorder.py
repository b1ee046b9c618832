"""Helpers for testing plugins: record the hook calls a run makes.

>>> manager = PluginManager()
>>> with HookRecorder(manager, listen_all=True) as recorder:
...     Trainer(task, manager=manager).fit(data, epochs=1)
>>> recorder.names[:2]
['on_pretrain_routine_start', 'on_pretrain_routine_end']

The recorder uses pluggy's hook-call monitoring, so it sees the calls that reach pluggy.  The
engine skips hooks that have no implementation; ``listen_all=True`` registers a listener that
implements every hook, so that the whole sequence fired by the engine is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pluggy

from hookline.manager import Callback, PluginManager


@dataclass(frozen=True)
class HookCall:
    """One recorded hook call: the hook, its arguments and the plugins that implement it."""

    name: str
    kwargs: Mapping[str, Any]
    plugins: tuple[str, ...]


def _listener_class(manager: PluginManager) -> type[Callback]:
    def ignore(self: Callback) -> None:
        return None

    names = sorted(manager.hook_names - {"on_plugin_registered"})
    return type("EveryHookListener", (Callback,), dict.fromkeys(names, ignore))


class HookRecorder:
    """Records every hook call that reaches pluggy on ``manager`` until :meth:`close`.

    :param listen_all: also register a plugin that implements every hook (except the historic
        ``on_plugin_registered``), so that every hook the engine fires is recorded.
    """

    LISTENER_NAME = "hookline-testing-listener"

    def __init__(self, manager: PluginManager, *, listen_all: bool = False) -> None:
        self.manager = manager
        self.calls: list[HookCall] = []
        self._listening = listen_all
        if listen_all:
            manager.register(_listener_class(manager)(), self.LISTENER_NAME)
        self._undo = manager.add_hookcall_monitoring(self._before, self._after)

    def _before(
        self, hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
    ) -> None:
        plugins = tuple(
            impl.plugin_name for impl in hook_impls if impl.plugin_name != self.LISTENER_NAME
        )
        self.calls.append(HookCall(hook_name, dict(kwargs), plugins))

    def _after(
        self,
        outcome: pluggy.Result[Any],
        hook_name: str,
        hook_impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, Any],
    ) -> None:
        return None

    @property
    def names(self) -> list[str]:
        """The names of the hooks called, in order."""
        return [call.name for call in self.calls]

    def of(self, hook_name: str) -> list[HookCall]:
        """The recorded calls of one hook."""
        return [call for call in self.calls if call.name == hook_name]

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.calls.clear()

    def close(self) -> None:
        """Stop recording (and unregister the listener, if any)."""
        self._undo()
        if self._listening:
            self.manager.unregister(name=self.LISTENER_NAME)
            self._listening = False

    def __enter__(self) -> HookRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
