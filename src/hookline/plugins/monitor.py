"""What "better" means for a monitored metric: shared by checkpointing, early stopping and the
plateau scheduler."""

from __future__ import annotations

import math

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
