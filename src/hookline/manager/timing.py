"""Timing plugins' hook implementations, for ``--trace-hooks``, the profile table
(``profile=True``) and the slow-plugin check.

:class:`ImplementationTimer` wraps the implementations of the hooks it is given in a timer
(pluggy calls ``HookImpl.function``) until :meth:`~ImplementationTimer.stop`; nothing is timed,
and nothing costs, outside that span.  ``wrapper=True`` implementations (generators around the
others) are not timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy

    from hookline.manager.plugin_manager import PluginManager


@dataclass
class Times:
    """Calls of one plugin's implementation of one hook, and the seconds they took."""

    calls: int = 0
    seconds: float = 0.0


class ImplementationTimer:
    """Times every implementation of ``hooks`` (every hook by default) registered now.

    :param exclude: plugin names whose implementations are not timed (the timer's owner).
    :param record: called with ``(plugin name, hook, seconds)`` after each timed call.
    """

    def __init__(
        self,
        manager: PluginManager,
        hooks: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        record: Callable[[str, str, float], None] | None = None,
    ) -> None:
        #: (plugin name, hook) to the :class:`Times` of its implementation.
        self.times: dict[tuple[str, str], Times] = {}
        self._wrapped: list[tuple[pluggy.HookImpl, Callable[..., Any], Callable[..., Any]]] = []
        excluded = frozenset(exclude)
        for hook in manager.hook_names if hooks is None else hooks:
            for impl in getattr(manager.hook, hook).get_hookimpls():
                if impl.wrapper or impl.hookwrapper or impl.plugin_name in excluded:
                    continue
                times = self.times.setdefault((impl.plugin_name, hook), Times())
                timed = _timed(impl.function, times, impl.plugin_name, hook, record)
                self._wrapped.append((impl, impl.function, timed))
                setattr(impl, "function", timed)  # noqa: B010 - pluggy marks it Final

    def stop(self) -> None:
        """Put the implementations back as they were (those wrapped since by someone else stay
        wrapped: timers are stopped in the reverse order of their start)."""
        for impl, original, timed in reversed(self._wrapped):
            if impl.function is timed:
                setattr(impl, "function", original)  # noqa: B010
        self._wrapped.clear()


def _timed(
    function: Callable[..., Any],
    times: Times,
    plugin: str,
    hook: str,
    record: Callable[[str, str, float], None] | None,
) -> Callable[..., Any]:
    clock = time.perf_counter

    def timed(*args: Any, **kwargs: Any) -> Any:  # kwargs: the arguments with defaults
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            elapsed = clock() - started
            times.calls += 1
            times.seconds += elapsed
            if record is not None:
                record(plugin, hook, elapsed)

    timed.__wrapped__ = function  # type: ignore[attr-defined]
    return timed
