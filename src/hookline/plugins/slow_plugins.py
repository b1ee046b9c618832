"""The slow-plugin check: one line when a plugin's per-batch training hooks take more than a
share of the training step (``slow_plugin_share``, 0.25 by default: a quarter).

It times the per-batch hooks of every other plugin over a window of training steps, from
the start of the batch after step :data:`FIRST_STEP` to the end of the batch of step
:data:`LAST_STEP` (the first steps are left out: they compile and warm caches), or until the
run ends, if sooner.  Each plugin whose per-batch hooks took more than the share of that
window's wall time gets one warning (:class:`SlowPluginWarning`) naming its slowest hook,
once per run.  Outside the window it costs nothing: its own hooks are event filters that are
due only at the window's two ends.  ``slow_plugins=False`` turns it off.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, ClassVar

from hookline.manager import Callback, once
from hookline.manager.timing import ImplementationTimer
from hookline.plugins.support import require
from hookline.run import TrainingRun
from hookline.settings import Options, Settings

#: The hooks that fire for every training batch.
BATCH_HOOKS = (
    "on_train_batch_start", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_params_update", "on_before_zero_grad", "on_train_batch_end",
)
#: The window of training steps that is timed.
FIRST_STEP, LAST_STEP = 5, 55


class SlowPluginWarning(UserWarning):
    """A plugin's per-batch hooks take a large share of the training step."""


class SlowPluginCheck(Callback):
    """Warns once per run about each plugin whose per-batch hooks slow training down.

    :param slow_plugin_share: the share of the step time (0 to 1) above which a plugin is
        reported.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    SETTINGS: ClassVar[dict[str, str]] = {
        "slow_plugin_share": "warn when a plugin's per-batch hooks take more than this share "
                             "of the training step (0-1)",
    }

    def __init__(self, slow_plugin_share: float = 0.25) -> None:
        self.slow_plugin_share = slow_plugin_share
        self._timer: ImplementationTimer | None = None
        self._started = 0.0
        self._first_step = 0
        #: The warnings of the last run: (plugin, hook, share of the step time).
        self.reported: list[tuple[str, str, float]] = []

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="slow_plugins")

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        share = self.slow_plugin_share
        require("slow_plugin_share", share, 0 < share <= 1, "a share in (0, 1]")

    def on_train_start(self) -> None:
        self.reported = []
        self._timer = None

    @once(step=FIRST_STEP)
    def on_train_batch_start(self, trainer: TrainingRun) -> None:
        if self._timer is not None or self.reported:
            return  # one window a run (with gradient accumulation, several batches are due)
        manager = trainer.manager
        self._timer = ImplementationTimer(
            manager, BATCH_HOOKS, exclude=[manager.get_name(self) or ""]
        )
        self._started, self._first_step = time.perf_counter(), trainer.global_step

    @once(step=LAST_STEP)
    def on_train_batch_end(self, trainer: TrainingRun) -> None:
        self._check(trainer)

    def on_train_end(self, trainer: TrainingRun) -> None:
        self._check(trainer)  # a run shorter than the window: what it timed

    def on_exception(self, run: Any) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _check(self, trainer: TrainingRun) -> None:
        timer = self._timer
        if timer is None:
            return
        self._timer = None
        timer.stop()
        elapsed = time.perf_counter() - self._started
        steps = max(1, trainer.global_step - self._first_step)
        per_plugin: dict[str, dict[str, float]] = {}
        for (plugin, hook), times in timer.times.items():
            per_plugin.setdefault(plugin, {})[hook] = times.seconds
        for plugin, hooks in sorted(per_plugin.items()):
            share = sum(hooks.values()) / elapsed if elapsed > 0 else 0.0
            if share <= self.slow_plugin_share:
                continue
            slowest = max(hooks, key=lambda hook: hooks[hook])
            self.reported.append((plugin, slowest, share))
            warnings.warn(
                f"hookline: plugin {plugin!r} takes {share:.0%} of the training step time "
                f"(its {slowest}: {hooks[slowest] / steps * 1000:.3g} ms a step, steps "
                f"{self._first_step}-{trainer.global_step}); per-batch work slows every step: "
                "move it to a log interval or an event filter (slow_plugins=False silences "
                "this)",
                SlowPluginWarning, stacklevel=2,
            )
