"""Sample-weighted means of device values, turned into floats only when read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Mean:
    """Running mean of per-batch means, weighted by batch size.

    Values are added in their framework's type (a device tensor stays on the device); the
    single host conversion happens in :meth:`result`.
    """

    def __init__(self) -> None:
        self.total: Any = None
        self.count = 0

    def add(self, value: Any, count: int) -> None:
        weighted = value * count
        self.total = weighted if self.total is None else self.total + weighted
        self.count += count

    def result(self, to_float: Callable[[Any], float]) -> float:
        if not self.count:
            raise ValueError("no values were added")
        return to_float(self.total) / self.count

    def reset(self) -> None:
        self.total = None
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        """The running total (still on its device) and count, for checkpoints."""
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = state["total"]
        self.count = int(state["count"])
