"""``results.png``: one panel per metric over the epochs.

The chart is drawn with Pillow (:mod:`hookline.plugins.support.charts`): a few milliseconds,
where matplotlib took a third of a second to import and a quarter to draw.  It still stays off
the training loop: it is redrawn in a background thread once ``plot_interval`` seconds have
passed since the last drawing (or since training started), and drawn once more when training
ends, with every epoch.  A user watching the file sees it refresh during a long run; a run
shorter than ``plot_interval`` draws it once, at its end.

A quantity reported as a mean and a maximum (the resource monitor's ``..._mean`` and
``..._max``) shares one panel, with a legend.  No window or display is needed.  When Pillow is
not installed the plugin says so once and draws nothing (``pip install 'hookline[plots]'``).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TextIO

from hookline.manager import Callback
from hookline.plugins.support import at_least, atomic_write, draw_panels, metric_order
from hookline.run import Run, TrainingRun
from hookline.settings import Options, Settings

SUFFIXES = ("_mean", "_max")


def panels(history: list[dict[str, float]]) -> dict[str, list[str]]:
    """Panel title to the metric names drawn in it (in the order they first appear): panels
    in the order the console prints metrics (:func:`~hookline.plugins.support.metric_order`),
    whatever order a backend reported them in."""
    grouped: dict[str, list[str]] = {}
    for name in dict.fromkeys(name for row in history for name in row if name != "epoch"):
        title = name
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                title = name[: -len(suffix)]
        grouped.setdefault(title, []).append(name)
    return {title: grouped[title] for title in sorted(grouped, key=metric_order)}


def draw(history: list[dict[str, float]], path: Path) -> None:
    """Draw ``history`` (one dict per epoch, with ``epoch``) into the PNG file ``path``."""
    charts = []
    for title, names in panels(history).items():
        series = []
        for name in names:
            points = [(row["epoch"], row[name]) for row in history if name in row]
            label = name[len(title) + 1 :] if name != title else None
            series.append((label, points))
        charts.append((title, series))
    image = draw_panels(charts, x_label="epoch", integer_x=True)
    atomic_write(path, lambda file: file.write(image), durable=False)


class ResultsPlot(Callback):
    """Draws ``results.png`` in the run directory from the epochs' ``on_log`` records: in the
    background during training, at most every ``plot_interval`` seconds, and at the end.

    The history is part of the checkpoint, so a resumed run's plot shows every epoch.

    :param stream: where the line about a missing Pillow goes; standard error by default.
    :param plot_interval: the least number of seconds between two drawings during training
        (also a setting); 0 redraws at every epoch's end.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "plot_interval": "seconds between redraws of results.png while training",
    }

    def __init__(self, stream: TextIO | None = None, plot_interval: float = 30.0) -> None:
        self.stream = stream
        self.plot_interval = plot_interval
        self.history: list[dict[str, float]] = []
        self.path: Path | None = None
        self._available: bool | None = None
        self._ending: tuple[int, Mapping[str, float]] | None = None
        self._worker: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._last_draw = -math.inf
        self._drawn = 0  # epochs in the last drawing
        self._said_missing = False

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="plots")

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        at_least("plot_interval", self.plot_interval, 0)

    def state_dict(self) -> dict[str, Any]:
        """The metrics of the epochs so far, the ending epoch's included (a checkpoint is
        taken at the epoch's end, before its metrics are logged)."""
        rows = [dict(row) for row in self.history]
        if self._ending is not None and all(row["epoch"] < self._ending[0] for row in rows):
            rows.append({"epoch": self._ending[0], **self._ending[1]})
        return {"history": rows}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.history = [dict(row) for row in state["history"]]

    def on_pretrain_routine_start(self) -> None:
        self.history, self._ending = [], None
        self._last_draw, self._drawn = time.monotonic(), 0  # the first drawing waits too

    def on_fit_epoch_end(self, trainer: TrainingRun, metrics: Mapping[str, float]) -> None:
        self._ending = (trainer.epoch + 1, metrics)

    def on_log(self, run: Run, metrics: Mapping[str, float], epoch: int, phase: str) -> None:
        if phase != "epoch" or not isinstance(run, TrainingRun) or run.save_dir is None:
            return
        if self._available is None:
            self._available = importlib.util.find_spec("PIL") is not None
        if not self._available:
            if not self._said_missing:
                self._said_missing = True
                stream = self.stream if self.stream is not None else sys.stderr
                stream.write("plots: Pillow is not installed, so results.png is not "
                             "drawn (pip install 'hookline[plots]')\n")
            return
        self.history = [row for row in self.history if row["epoch"] < epoch + 1]
        self.history.append({"epoch": epoch + 1, **metrics})
        self._ending = None
        self.path = run.save_dir / "results.png"
        self._raise_failure()
        due = time.monotonic() - self._last_draw >= self.plot_interval
        if due and (self._worker is None or not self._worker.is_alive()):
            self._start_drawing()

    def _start_drawing(self) -> None:
        """Draw a copy of the history in a thread (one at a time)."""
        assert self.path is not None
        rows, path = [dict(row) for row in self.history], self.path
        self._last_draw, self._drawn = time.monotonic(), len(rows)

        def drawing() -> None:
            try:
                draw(rows, path)
            except BaseException as error:  # reported from the next hook, where it counts
                self._failure = error

        self._worker = threading.Thread(target=drawing, name="hookline-plots", daemon=True)
        self._worker.start()

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def teardown(self) -> None:
        """Wait for a drawing under way, then draw every epoch once more if any is missing."""
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._raise_failure()
        if self.path is not None and self.history and self._drawn != len(self.history):
            draw(self.history, self.path)
            self._drawn = len(self.history)
