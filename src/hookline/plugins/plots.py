"""``results.png``: one panel per metric over the epochs, redrawn at each epoch's end.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from hookline.engine import Phase, Trainer
from hookline.manager import Callback
from hookline.plugins.support import atomic_write

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


def draw(history: list[dict[str, float]], path: Path) -> None:
    """Draw ``history`` (one dict per epoch, with ``epoch``) into the PNG file ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grouped = panels(history)
    columns = min(4, max(1, len(grouped)))
    rows = max(1, math.ceil(len(grouped) / columns))
    figure = Figure(figsize=(3.6 * columns, 2.8 * rows), dpi=100, layout="constrained")
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
    """Draws ``results.png`` in the run directory at each epoch's end, from ``on_log``.

    The history is part of the checkpoint, so a resumed run's plot shows every epoch.

    :param stream: where the line about a missing matplotlib goes; standard error by default.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.history: list[dict[str, float]] = []
        self.path: Path | None = None
        self._available: bool | None = None
        self._ending: tuple[int, Mapping[str, float]] | None = None

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

    def on_fit_epoch_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        self._ending = (trainer.epoch + 1, metrics)

    def on_log(self, run: Phase, metrics: Mapping[str, float], epoch: int, phase: str) -> None:
        if phase != "epoch" or not isinstance(run, Trainer) or run.save_dir is None:
            return
        if self._available is None:
            self._available = importlib.util.find_spec("matplotlib") is not None
            if not self._available:
                stream = self.stream if self.stream is not None else sys.stderr
                stream.write("plots: matplotlib is not installed, so results.png is not "
                             "drawn (pip install 'hookline[plots]')\n")
        if not self._available:
            return
        self.history = [row for row in self.history if row["epoch"] < epoch + 1]
        self.history.append({"epoch": epoch + 1, **metrics})
        self._ending = None
        self.path = run.save_dir / "results.png"
        draw(self.history, self.path)
