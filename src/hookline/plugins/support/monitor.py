"""What "better" means for a monitored metric: shared by checkpointing, early stopping and the
plateau scheduler."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hookline.settings import SettingsError

#: Metric names that contain one of these words are maximised when the mode is ``auto``.
HIGHER_IS_BETTER = ("acc", "f1", "precision", "recall", "auc", "map", "iou", "r2", "score")


def resolve_mode(monitor: str, mode: str) -> str:
    """``min`` or ``max``; ``auto`` maximises accuracy-like names and minimises the rest."""
    if mode not in ("min", "max", "auto"):
        raise SettingsError(f"mode must be min, max or auto, got {mode!r}")
    if mode != "auto":
        return mode
    leaf = monitor.rsplit("/", 1)[-1].lower()
    return "max" if any(word in leaf for word in HIGHER_IS_BETTER) else "min"


def improves(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (any finite value beats
    ``None``; a NaN never improves)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class BestTracker:
    """The best value of a monitored metric seen so far, and the epoch (1-based) it came from.

    For plugins that report the best result (summary, notifications); a checkpoint restores it
    through :meth:`state_dict` and :meth:`load_state_dict`.
    """

    def __init__(self, monitor: str = "val/loss", mode: str = "auto") -> None:
        self.monitor, self.mode = monitor, mode
        self.value: float | None = None
        self.epoch: int | None = None

    def update(self, metrics: Mapping[str, float], epoch: int) -> bool:
        """Record ``metrics`` of the 0-based ``epoch``; true when the monitor improved."""
        value = metrics.get(self.monitor)
        if value is None or not improves(value, self.value, resolve_mode(self.monitor, self.mode)):
            return False
        self.value, self.epoch = float(value), epoch + 1
        return True

    def state_dict(self) -> dict[str, Any]:
        """The best value and epoch."""
        return {"value": self.value, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.value, self.epoch = state["value"], state["epoch"]
