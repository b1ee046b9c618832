"""The run summary: printed when training ends and saved as ``summary.json`` in the run
directory.

It says how the run ended (finished, stopped early and why, or failed and with what), how many
epochs completed and how long the run took (set-up included), the best value of the monitored
metric and its epoch, the last epoch's metrics, the files the run wrote, the plugins a
failure disabled (``plugin_failures``: plugin, distribution, hook, error), and what other
plugins reported about the run (:attr:`hookline.Run.report`: the profile table, ...).  A run
that failed is described under ``failure`` (the plugin at fault, its distribution and hook
when a plugin's hook raised, and the error), and its full traceback is written to
``error.log`` in the run directory.  A resumed run counts the time, the epochs and the best
result from before the interruption (all kept in the checkpoint).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TextIO

from hookline.manager import Callback, PluginFailure, hookimpl
from hookline.plugins.support import BestTracker, atomic_write, format_metrics, resolve_mode
from hookline.run import Run, TrainingRun
from hookline.settings import Options, Settings

#: The file of a failed run's directory that holds the failure's full traceback.
ERROR_LOG = "error.log"


def run_files(save_dir: Path) -> list[str]:
    """What ``save_dir`` holds, sorted: files, and folders with a trailing ``/``; hidden
    entries left out."""
    return sorted(
        path.name + ("/" if path.is_dir() else "")
        for path in save_dir.iterdir()
        if not path.name.startswith(".")
    )


def _described(error: BaseException) -> str:
    """``Type: message``."""
    return f"{type(error).__name__}: {error}"


def _shown(path: Path, save_dir: Path | None) -> str:
    """``path`` relative to the run directory when it is inside it."""
    if save_dir is not None and path.is_relative_to(save_dir):
        return str(path.relative_to(save_dir))
    return str(path)


class RunSummary(Callback):
    """Prints a summary when training ends (also after a failure) and writes ``summary.json``.

    :param stream: where to print; standard output by default.  Nothing is printed when the
        console output is turned off (``verbose=False``) and no stream is given.
    :param monitor: the metric whose best value is reported (setting shared with checkpointing
        and early stopping).
    :param mode: ``min``, ``max`` or ``auto``.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "monitor": "metric that decides 'best'",
        "mode": "min, max or auto for the monitor",
    }

    def __init__(
        self, stream: TextIO | None = None, monitor: str = "val/loss", mode: str = "auto"
    ) -> None:
        self.stream = stream
        self.monitor, self.mode = monitor, mode
        self.best = BestTracker(monitor, mode)
        self.summary: dict[str, Any] = {}
        self._started = 0.0
        self._earlier_seconds = 0.0
        self._failure: BaseException | None = None
        self._models: dict[Path, None] = {}
        self._epochs_done = 0
        self._failures_before = 0
        self._print_summary = True

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="summary")

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        resolve_mode(self.monitor, self.mode)
        self.best = BestTracker(self.monitor, self.mode)
        quiet = "verbose" in settings.explicit and not settings["verbose"]
        self._print_summary = not quiet or self.stream is not None
        self._earlier_seconds, self._failure, self._models = 0.0, None, {}

    def state_dict(self) -> dict[str, Any]:
        """The best result so far and the training time spent, for a resumed run."""
        return {
            "best": self.best.state_dict(), "seconds": self._seconds(),
            "epochs_done": self._epochs_done,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.best.load_state_dict(state["best"])
        self._earlier_seconds = float(state["seconds"])
        self._epochs_done = int(state.get("epochs_done", 0))

    def _seconds(self) -> float:
        running = time.monotonic() - self._started if self._started else 0.0
        return self._earlier_seconds + running

    def on_pretrain_routine_start(self, trainer: TrainingRun) -> None:
        # from set-up on, so that a run that fails before its first epoch is summarized too
        self._started = time.monotonic()
        self._epochs_done = 0
        self._failures_before = len(trainer.manager.failures)

    def on_fit_epoch_end(self, trainer: TrainingRun, metrics: Mapping[str, float]) -> None:
        self.best.update(metrics, trainer.epoch)
        self._epochs_done = trainer.epoch + 1

    def on_model_save(self, path: Path) -> None:
        self._models[path] = None

    def on_exception(self, exception: BaseException) -> None:
        self._failure = exception

    @hookimpl(trylast=True)  # after the other plugins' teardown: their failures are counted
    def teardown(self, run: Run) -> None:
        if not isinstance(run, TrainingRun) or not self._started:
            return
        culprit = None if self._failure is None else run.manager.failure_of(self._failure)
        if self._failure is not None:
            ended = f"failed: {culprit or _described(self._failure)}"
        elif run.interrupted:
            ended = f"interrupted: {run.stop_reason}"
        elif run.stop_reason:
            ended = f"stopped early: {run.stop_reason}"
        else:
            ended = "finished"
        failures = run.manager.failures[self._failures_before :]
        summary: dict[str, Any] = {
            "ended": ended,
            "epochs": self._epochs_done,
            "of_epochs": run.epochs,
            "steps": run.global_step,
            "seconds": round(self._seconds(), 3),
            "monitor": self.monitor,
            "best": self.best.state_dict(),
            "final_metrics": dict(run.metrics),
            "save_dir": None if run.save_dir is None else str(run.save_dir),
            "files": [],
            "models": [_shown(path, run.save_dir) for path in self._models if path.is_file()],
            "plugin_failures": [disabled.as_dict() for disabled in failures],
            "failure": self._failure_record(run, culprit),
        }
        summary.update({key: value for key, value in run.report.items() if key not in summary})
        if run.save_dir is not None and run.save_dir.is_dir():
            if self._failure is not None:
                log = "".join(traceback.format_exception(self._failure))
                atomic_write(
                    run.save_dir / ERROR_LOG, lambda file: file.write(log.encode()),
                    durable=False,
                )
            summary["files"] = [name for name in run_files(run.save_dir)
                                if name != "summary.json"]
            text = json.dumps(summary, indent=2) + "\n"
            atomic_write(
                run.save_dir / "summary.json", lambda file: file.write(text.encode()), durable=False
            )
        self.summary = summary
        if self._print_summary:
            self._print(summary)
        self._started = 0.0

    def _failure_record(self, run: Run, culprit: PluginFailure | None) -> dict[str, Any] | None:
        """What ended the run, None when nothing failed: the plugin at fault (``culprit``),
        its distribution (installed plugins) and the hook (all None when no plugin's hook
        raised), the error, and the file that holds its traceback (when the run has a
        directory)."""
        if self._failure is None:
            return None
        record: dict[str, Any] = dict.fromkeys(("plugin", "distribution", "hook"))
        if culprit is not None:
            record.update(culprit.as_dict())
        record["error"] = _described(self._failure)
        has_dir = run.save_dir is not None and run.save_dir.is_dir()
        record["traceback"] = ERROR_LOG if has_dir else None
        return record

    def _print(self, summary: Mapping[str, Any]) -> None:
        best = summary["best"]
        lines = [
            f"training {summary['ended']} after {summary['epochs']}/{summary['of_epochs']} "
            f"epochs, {summary['steps']} steps, {summary['seconds']:.1f} s",
        ]
        if best["value"] is not None:
            lines.append(f"  best    {self.monitor} {best['value']:.4g} at epoch {best['epoch']}")
        if summary["final_metrics"]:
            lines.append(f"  last    {format_metrics(summary['final_metrics'])}")
        if summary["save_dir"] is not None:
            lines.append(f"  results {summary['save_dir']}: {', '.join(summary['files'])}")
        if summary["models"]:
            lines.append(f"  models  {', '.join(summary['models'])}")
        for failure in summary["plugin_failures"]:
            lines.append(
                f"  disabled {failure['plugin']} (in {failure['hook']}: {failure['error']})"
            )
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write("\n".join(lines) + "\n")
        stream.flush()
