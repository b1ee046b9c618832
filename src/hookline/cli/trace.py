"""``--trace-hooks``: every hook call that reaches a plugin, with each plugin's time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hookline.manager import PluginManager
from hookline.manager.timing import ImplementationTimer


def trace_hooks(manager: PluginManager, stream: Any = None) -> Callable[[], None]:
    """Print each hook call that reaches a plugin: the hook, the call's duration, and each
    plugin that ran with its own duration (in call order).  Returns the function that stops.

    Each registered implementation is wrapped in a timer for the duration of the trace
    (pluggy calls ``HookImpl.function``), except ``wrapper=True`` ones, which are listed
    without a time.  Plugins registered after the trace started are listed without a time.
    """
    out = stream if stream is not None else sys.stderr
    calls: list[tuple[float, dict[str, float]]] = []

    def record(plugin: str, hook: str, seconds: float) -> None:
        if calls:
            calls[-1][1][plugin] = seconds

    timer = ImplementationTimer(manager, record=record)

    def before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        calls.append((time.perf_counter(), {}))

    def after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Any) -> None:
        started, durations = calls.pop()
        elapsed = (time.perf_counter() - started) * 1000
        plugins = ", ".join(
            f"{impl.plugin_name} {durations[impl.plugin_name] * 1000:.3f} ms"
            if impl.plugin_name in durations else impl.plugin_name
            for impl in reversed(impls)  # pluggy calls the last registered first
        )
        out.write(f"[hook] {hook_name:<28} {elapsed:9.3f} ms  {plugins}\n")

    undo_monitoring = manager.add_hookcall_monitoring(before, after)

    def undo() -> None:
        undo_monitoring()
        timer.stop()

    return undo
