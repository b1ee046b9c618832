"""``results.png``: one panel per metric over the epochs.

Drawing a figure costs about a quarter of a second (importing matplotlib a third), so it
stays off the training loop: matplotlib is imported in a background thread when training
starts, the plot is redrawn in a background thread once ``plot_interval`` seconds have passed
since the last drawing (or since training started), and drawn once more when training ends,
with every epoch.  A user watching the file sees it refresh during a long run; a run shorter
than ``plot_interval`` pays for one drawing, at its end.  The panels are placed by fixed
margins: matplotlib's constrained layout would double the cost of a drawing.

A quantity reported as a mean and a maximum (the resource monitor's ``..._mean`` and
``..._max``) shares one panel.  Drawing uses matplotlib's Agg canvas directly, without pyplot:
no window, no display needed, no global figure state.  When matplotlib is not installed the
plugin says so once and draws nothing (``pip install 'hookline[plots]'``).
"""

from __future__ import annotations

import importlib.util
import io
import math
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TextIO

from hookline.engine import Phase, Trainer
from hookline.manager import Callback
from hookline.plugins.support import at_least, atomic_write
from hookline.settings import Options, Settings

SUFFIXES = ("_mean", "_max")


def panels(history: list[dict[str, float]]) -> dict[str, list[str]]:
    """Panel title to the metric names drawn in it, in the order metrics first appear."""
    grouped: dict[str, list[str]] = {}
    for name in dict.fromkeys(name for row in history for name in row if name != "epoch"):
        title = name
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                title = name[: -len(suffix)]
        grouped.setdefault(title, []).append(name)
    return grouped


def _import_matplotlib() -> None:
    """Import what :func:`draw` needs (a third of a second), off the training loop."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401


def draw(history: list[dict[str, float]], path: Path) -> None:
    """Draw ``history`` (one dict per epoch, with ``epoch``) into the PNG file ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grouped = panels(history)
    columns = min(4, max(1, len(grouped)))
    rows = max(1, math.ceil(len(grouped) / columns))
    width, height = 3.6 * columns, 2.8 * rows
    figure = Figure(figsize=(width, height), dpi=100)
    # fixed margins in inches (titles above, tick labels and the x label below)
    figure.subplots_adjust(
        left=0.6 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.35 / height,
        wspace=0.35, hspace=0.75 if rows > 1 else 0.2,
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, names) in zip(axes, grouped.items(), strict=False):
        for name in names:
            points = [(row["epoch"], row[name]) for row in history if name in row]
            epochs, values = zip(*points, strict=True)
            label = name[len(title) + 1 :] if name != title else None
            ax.plot(epochs, values, marker="o", markersize=3, linewidth=1.5, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    for ax in axes[len(grouped) :]:
        ax.set_visible(False)
    image = io.BytesIO()
    figure.savefig(image, format="png")
    atomic_write(path, lambda file: file.write(image.getvalue()), durable=False)


class ResultsPlot(Callback):
    """Draws ``results.png`` in the run directory from the epochs' ``on_log`` records: in the
    background during training, at most every ``plot_interval`` seconds, and at the end.

    The history is part of the checkpoint, so a resumed run's plot shows every epoch.

    :param stream: where the line about a missing matplotlib goes; standard error by default.
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
        self._importer: threading.Thread | None = None
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
        if self._available is None:
            self._available = importlib.util.find_spec("matplotlib") is not None
        if self._available and self._importer is None:  # ready by the first drawing
            self._importer = threading.Thread(
                target=_import_matplotlib, name="hookline-plots-import", daemon=True
            )
            self._importer.start()

    def on_fit_epoch_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        self._ending = (trainer.epoch + 1, metrics)

    def on_log(self, run: Phase, metrics: Mapping[str, float], epoch: int, phase: str) -> None:
        if phase != "epoch" or not isinstance(run, Trainer) or run.save_dir is None:
            return
        if self._available is None:
            self._available = importlib.util.find_spec("matplotlib") is not None
        if not self._available:
            if not self._said_missing:
                self._said_missing = True
                stream = self.stream if self.stream is not None else sys.stderr
                stream.write("plots: matplotlib is not installed, so results.png is not "
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
        if self._importer is not None:
            self._importer.join()
            self._importer = None
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._raise_failure()
        if self.path is not None and self.history and self._drawn != len(self.history):
            draw(self.history, self.path)
            self._drawn = len(self.history)
