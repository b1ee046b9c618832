"""The hook profile (``profile=True``): the time each plugin spends in each hook, and with
``profile_memory=True`` the memory it keeps and uses there.

At the end of a training run it prints a table, hook by hook and plugin by plugin (calls,
total milliseconds, mean microseconds), and reports it to the run summary
(``summary.json``, key ``profile``).  A hook's own row is the time of its calls as a whole,
dispatch included; its plugins' rows add up to a little less.  A hook fired from inside
another (``on_model_save``, from a checkpoint written in ``on_fit_epoch_end``) counts in both.
Off by default, and then it costs nothing: the timers exist only while a profiled run lasts.

``profile_memory=True`` (off by default; with :class:`hookline.Model` and ``hookline train``
it needs ``profile=True`` too, while a bridge turns the profile on for it) adds two columns to
the plugins' rows: ``retained_kib``, what the plugin's calls kept (traced memory after each
call less before it, summed over the run), and ``peak_kib``, the most one call used above the
memory at its start.  They are measured with :mod:`tracemalloc`, started for the run unless
something already traces (and then left running at the end).  tracemalloc sees allocations made
through Python's allocators, NumPy arrays' buffers included, from every thread while the call
lasts; it does not see torch tensors' storage or any device memory.  Tracing slows every Python
allocation, so the times of a memory-profiled run read high: profile time without it.  A
hook's own row has no memory columns, and without ``profile_memory`` no row has them.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TextIO

from hookline.manager import Callback, hookimpl
from hookline.manager.timing import ImplementationTimer, Times
from hookline.run import Run, TrainingRun
from hookline.settings import Options, Settings

#: Hooks left out of the profile: they run before the profile starts or while it ends.
UNPROFILED = frozenset({
    "on_plugin_registered", "hookline_add_options", "hookline_configure",
    "on_pretrain_routine_start", "teardown",
})


class HookProfile(Callback):
    """Times every plugin's hook implementations during a training run and reports the table.

    :param stream: where to print the table; standard output by default.
    :param profile_memory: also measure each plugin's traced memory in each hook (see above).
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "profile_memory": "add each plugin's memory to the profile (tracemalloc: Python "
                          "allocations, not tensors; slows the run)",
    }

    def __init__(self, stream: TextIO | None = None, profile_memory: bool = False) -> None:
        self.stream = stream
        self.profile_memory = profile_memory
        #: The last run's table (also in the run's ``report`` under ``profile``).
        self.table: dict[str, Any] = {}
        self._timer: ImplementationTimer | None = None
        self._hook_times: dict[str, Times] = {}
        self._started: list[float] = []
        self._undo_monitoring: Any = None
        self._tracing = False  # whether this plugin started tracemalloc (and so stops it)

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="profile")

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)

    @hookimpl(trylast=True)  # the other plugins' set-up is not profiled: it ran before
    def on_pretrain_routine_start(self, trainer: TrainingRun) -> None:
        manager = trainer.manager
        own_name = manager.get_name(self) or ""
        hooks = manager.hook_names - UNPROFILED
        self._hook_times = {}
        self._started = []
        if self.profile_memory and not tracemalloc.is_tracing():
            tracemalloc.start()
            self._tracing = True
        self._timer = ImplementationTimer(
            manager, hooks, exclude=[own_name], memory=self.profile_memory
        )

        def before(hook: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
            self._started.append(time.perf_counter())

        def after(outcome: Any, hook: str, impls: Sequence[Any], kwargs: Any) -> None:
            started = self._started.pop()
            if hook in hooks and any(impl.plugin_name != own_name for impl in impls):
                times = self._hook_times.setdefault(hook, Times())
                times.calls += 1
                times.seconds += time.perf_counter() - started

        self._undo_monitoring = manager.add_hookcall_monitoring(before, after)

    @hookimpl(tryfirst=True)  # before the summary, which writes the report
    def teardown(self, run: Run) -> None:
        if self._timer is None or not isinstance(run, TrainingRun):
            return
        self._undo_monitoring()
        self._timer.stop()
        if self._tracing:
            tracemalloc.stop()
            self._tracing = False
        self.table = profile_table(
            self._hook_times, self._timer.times, memory=self.profile_memory
        )
        self._timer = None
        run.report["profile"] = self.table
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(format_table(self.table))
        stream.flush()


def _row(times: Times, memory: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "calls": times.calls,
        "total_ms": round(times.seconds * 1000, 3),
        "mean_us": round(times.seconds / times.calls * 1e6, 1) if times.calls else 0.0,
    }
    if memory:
        row["retained_kib"] = round(times.retained_bytes / 1024, 1)
        row["peak_kib"] = round(times.peak_bytes / 1024, 1)
    return row


def profile_table(
    hook_times: Mapping[str, Times],
    plugin_times: Mapping[tuple[str, str], Times],
    *,
    memory: bool = False,
) -> dict[str, Any]:
    """The profile as plain data: per hook (slowest first) its calls and time, and its
    plugins' (slowest first); ``total_ms``: every hook's time.  With ``memory`` each plugin's
    row also has ``retained_kib`` and ``peak_kib`` (from :class:`Times`' bytes)."""
    hooks = []
    for hook, times in sorted(hook_times.items(), key=lambda item: -item[1].seconds):
        plugins = [
            {"plugin": plugin, **_row(own, memory)}
            for (plugin, name), own in sorted(plugin_times.items(), key=lambda i: -i[1].seconds)
            if name == hook and own.calls
        ]
        hooks.append({"hook": hook, **_row(times), "plugins": plugins})
    total = sum(times.seconds for times in hook_times.values())
    return {"total_ms": round(total * 1000, 3), "hooks": hooks}


def format_table(table: Mapping[str, Any]) -> str:
    """The profile table as text: a line per hook, an indented line per plugin; with two more
    columns for the plugins' memory when the table has it."""
    memory = any("peak_kib" in plugin for hook in table["hooks"] for plugin in hook["plugins"])
    title = "hook profile (a hook's time includes dispatch; its plugins' times are indented)"
    header = f"{'hook / plugin':<34} {'calls':>8} {'total ms':>11} {'mean us':>10}"
    if memory:
        title += "\nmemory: Python allocations traced by tracemalloc (times read high)"
        header += f" {'retained KiB':>13} {'peak KiB':>10}"
    lines = [title, header]
    for hook in table["hooks"]:
        lines.append(f"{hook['hook']:<34} {hook['calls']:>8} {hook['total_ms']:>11.3f} "
                     f"{hook['mean_us']:>10.1f}")
        for plugin in hook["plugins"]:
            line = (f"  {plugin['plugin']:<32} {plugin['calls']:>8} "
                    f"{plugin['total_ms']:>11.3f} {plugin['mean_us']:>10.1f}")
            if memory:
                line += f" {plugin['retained_kib']:>13.1f} {plugin['peak_kib']:>10.1f}"
            lines.append(line)
    lines.append(f"{'all hooks':<34} {'':>8} {table['total_ms']:>11.3f}")
    return "\n".join(lines) + "\n"
