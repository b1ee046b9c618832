"""``--trace-hooks``: every hook call that reaches a plugin, with each plugin's time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hookline.manager import PluginManager


def trace_hooks(manager: PluginManager, stream: Any = None) -> Callable[[], None]:
    """Print each hook call that reaches a plugin: the hook, the call's duration, and each
    plugin that ran with its own duration (in call order).  Returns the function that stops.

    Each registered implementation is wrapped in a timer for the duration of the trace
    (pluggy calls ``HookImpl.function``), except ``wrapper=True`` ones, which are listed
    without a time.  Plugins registered after the trace started are listed without a time.
    """
    out = stream if stream is not None else sys.stderr
    calls: list[tuple[float, list[tuple[str, float]]]] = []
    originals: list[tuple[Any, Callable[..., Any]]] = []

    def timed(function: Callable[..., Any], plugin: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if calls:
                    calls[-1][1].append((plugin, time.perf_counter() - started))

        return run

    for name in manager.hook_names:
        for impl in getattr(manager.hook, name).get_hookimpls():
            if not (impl.wrapper or impl.hookwrapper):
                originals.append((impl, impl.function))
                setattr(impl, "function", timed(impl.function, impl.plugin_name))  # noqa: B010

    def before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        calls.append((time.perf_counter(), []))

    def after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Any) -> None:
        started, ran = calls.pop()
        elapsed = (time.perf_counter() - started) * 1000
        durations = dict(ran)
        plugins = ", ".join(
            f"{impl.plugin_name} {durations[impl.plugin_name] * 1000:.3f} ms"
            if impl.plugin_name in durations else impl.plugin_name
            for impl in reversed(impls)  # pluggy calls the last registered first
        )
        out.write(f"[hook] {hook_name:<28} {elapsed:9.3f} ms  {plugins}\n")

    undo_monitoring = manager.add_hookcall_monitoring(before, after)

    def undo() -> None:
        undo_monitoring()
        for impl, function in originals:
            setattr(impl, "function", function)  # noqa: B010

    return undo
