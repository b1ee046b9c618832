"""Timing plugins' hook implementations, for ``--trace-hooks``, the profile table
(``profile=True``) and the slow-plugin check.

:class:`ImplementationTimer` wraps the implementations of the hooks it is given in a timer
(pluggy calls ``HookImpl.function``) until :meth:`~ImplementationTimer.stop`; nothing is timed,
and nothing costs, outside that span.  ``wrapper=True`` implementations (generators around the
others) are not timed.

With ``memory=True`` (``profile_memory=True``) each call is also measured with
:mod:`tracemalloc`, which the caller must have started: what the implementation kept (traced
memory after the call less before it, summed over calls) and its peak (the most traced memory
during one call above the memory at its start).  tracemalloc sees the allocations Python's
allocators make, the buffers of NumPy arrays included, and those of every thread while the
call lasts; it does not see memory a library allocates itself, such as torch tensors' storage,
nor device memory.  Tracing slows every Python allocation, so the times of a memory-profiled
run read high.  Its peak is one per process (:func:`tracemalloc.reset_peak` is global): a hook
fired inside another plugin's implementation (``on_model_save`` from a checkpoint written in
``on_fit_epoch_end``) keeps the outer call's peak right through a stack of running maxima,
and its memory counts in both plugins' rows.  Without ``memory`` the wrapper is a plain timer
and makes no tracemalloc call.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy

    from hookline.manager.plugin_manager import PluginManager


@dataclass
class Times:
    """Calls of one plugin's implementation of one hook, the seconds they took and, when memory
    is measured, the traced bytes they kept and the most they used above their start."""

    calls: int = 0
    seconds: float = 0.0
    #: The sum over calls of the traced memory after the call less before it (may be negative:
    #: a call that frees what an earlier one kept).
    retained_bytes: int = 0
    #: The most, over calls, of the traced peak during a call above the memory at its start.
    peak_bytes: int = 0


class ImplementationTimer:
    """Times every implementation of ``hooks`` (every hook by default) registered now.

    :param exclude: plugin names whose implementations are not timed (the timer's owner).
    :param record: called with ``(plugin name, hook, seconds)`` after each timed call.
    :param memory: also measure each call's traced memory (``retained_bytes``, ``peak_bytes``);
        the caller starts :mod:`tracemalloc` (without it every call measures 0).
    """

    def __init__(
        self,
        manager: PluginManager,
        hooks: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        record: Callable[[str, str, float], None] | None = None,
        memory: bool = False,
    ) -> None:
        #: (plugin name, hook) to the :class:`Times` of its implementation.
        self.times: dict[tuple[str, str], Times] = {}
        self._wrapped: list[tuple[pluggy.HookImpl, Callable[..., Any], Callable[..., Any]]] = []
        excluded = frozenset(exclude)
        wrap = _timed_with_memory if memory else _timed  # chosen once: no cost without memory
        for hook in manager.hook_names if hooks is None else hooks:
            for impl in getattr(manager.hook, hook).get_hookimpls():
                if impl.wrapper or impl.hookwrapper or impl.plugin_name in excluded:
                    continue
                times = self.times.setdefault((impl.plugin_name, hook), Times())
                timed = wrap(impl.function, times, impl.plugin_name, hook, record)
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


class _Peaks:
    """The running maximum of the traced peak of each measured call in progress, a stack per
    thread (innermost last).  tracemalloc's peak is one for the process: before any call resets
    it, the peak so far is kept in the innermost open call of every thread, so that neither a
    nested call nor one in another thread (a hook a plugin fires from its own thread) hides
    it, and no call takes another's entry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stacks: dict[int, list[int]] = {}

    def enter(self) -> int:
        """Open a call: the traced memory at its start."""
        with self._lock:
            before, peak = tracemalloc.get_traced_memory()
            for stack in self._stacks.values():
                stack[-1] = max(stack[-1], peak)
            tracemalloc.reset_peak()
            self._stacks.setdefault(threading.get_ident(), []).append(before)
            return before

    def leave(self) -> tuple[int, int]:
        """Close this thread's innermost call: the traced memory now, and the call's peak."""
        with self._lock:
            after, peak = tracemalloc.get_traced_memory()
            stack = self._stacks[threading.get_ident()]
            highest = max(stack.pop(), peak)
            if stack:
                stack[-1] = max(stack[-1], highest)
            else:
                del self._stacks[threading.get_ident()]
            return after, highest


_peaks = _Peaks()


def _timed_with_memory(
    function: Callable[..., Any],
    times: Times,
    plugin: str,
    hook: str,
    record: Callable[[str, str, float], None] | None,
) -> Callable[..., Any]:
    clock = time.perf_counter

    def timed(*args: Any, **kwargs: Any) -> Any:
        before = _peaks.enter()
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            elapsed = clock() - started
            after, highest = _peaks.leave()
            times.calls += 1
            times.seconds += elapsed
            times.retained_bytes += after - before
            times.peak_bytes = max(times.peak_bytes, highest - before)
            if record is not None:
                record(plugin, hook, elapsed)

    timed.__wrapped__ = function  # type: ignore[attr-defined]
    return timed
