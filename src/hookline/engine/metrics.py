"""Sample-weighted means of device values, turned into floats only when read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hookline.backends.base import Task


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

    def result(self, task: Task) -> float:
        """The mean over every sample of every process: totals and counts are summed across
        processes (``task.reduce_sum``), then converted to a float once."""
        count = task.reduce_sum(self.count)
        if not count:
            raise ValueError("no values were added")
        total = task.reduce_sum(self.total if self.total is not None else 0.0)
        mean: float = task.to_float(total) / count
        return mean

    def reset(self) -> None:
        self.total = None
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        """The running total (still on its device) and count, for checkpoints."""
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = state["total"]
        self.count = int(state["count"])
