"""Sample-weighted means of device values, turned into floats only when read.

Adding a value costs no framework operation: values are kept as they come (still on their
device) and summed in one ``Task.weighted_sum`` when read, or every ``values_per_sum`` values
(the task's, else :data:`Mean.CHUNK`) to bound memory; a plain number (what ``Task.detach``
gives where reading a value waits for nothing) is summed at once.  Reading sums across
processes first (``Task.reduce_sum``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hookline.engine.task import Task


class Mean:
    """Running mean of per-batch means, weighted by batch size."""

    CHUNK = 1024

    def __init__(self, task: Task) -> None:
        self.task = task
        self.chunk = int(getattr(task, "values_per_sum", self.CHUNK))
        self.values: list[Any] = []
        self.weights: list[int] = []
        self.total: Any = None
        self.count = 0

    def add(self, value: Any, count: int) -> None:
        self.count += count
        if isinstance(value, float):  # a number (read at no cost): summed at once
            self.total = value * count if self.total is None else self.total + value * count
            return
        self.values.append(value)
        self.weights.append(count)
        if len(self.values) >= self.chunk:
            self._collapse()

    def _collapse(self) -> Any:
        if self.values:
            partial = self.task.weighted_sum(self.values, self.weights)
            self.total = partial if self.total is None else self.total + partial
            self.values, self.weights = [], []
        return self.total

    def result(self) -> float:
        """The mean over every sample of every process, as a float (one host transfer)."""
        task = self.task
        count = task.reduce_sum(self.count)
        if not count:
            raise ValueError("no values were added")
        total = self._collapse()
        total = task.reduce_sum(total if total is not None else 0.0)
        mean: float = task.to_float(total) / count
        return mean

    def take(self) -> tuple[Any, int]:
        """This process's total (still on its device: no transfer) and count, then
        :meth:`reset`; for a caller that reads the total when the device has computed it."""
        if not self.count:
            raise ValueError("no values were added")
        taken = self._collapse(), self.count
        self.reset()
        return taken

    def reset(self) -> None:
        self.values, self.weights = [], []
        self.total = None
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        """The running total (still on its device) and count, for checkpoints."""
        return {"total": self._collapse(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values, self.weights = [], []
        self.total = state["total"]
        self.count = int(state["count"])
