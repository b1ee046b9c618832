"""The Task protocol: the one door between hookline and a framework.

A task owns the model, the loss and the optimizer of one framework.  The engine and every
built-in plugin call these methods and nothing else, so that none of them imports a framework
and the same plugins run on every backend.  Values the task returns (losses, metrics) stay in
the framework's own type, on its device: the engine only adds and scales them, and turns them
into floats with :meth:`Task.to_float` at log intervals and epoch ends, never per batch.

The protocol has two parts.  The state part, :class:`hookline.run.StateTask`, is what plugins
use: parameters, learning rates, random state, checkpoint payloads that load without running
code, ``to_float``; a bridge implements it over a host trainer's model and optimizer.  The loop
part, :class:`Task`, adds what only hookline's own loop calls: the steps, backward, the
optimizer step (after :meth:`Task.unscale_gradients`), sharding and export.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from hookline.run import StateTask

Stage = Literal["fit", "validate", "predict", "export"]


@runtime_checkable
class StatefulMetric(Protocol):
    """A metric accumulated over batches and computed once over all of them (F1, AUC, ...,
    which no mean of per-batch values gives); a ``torchmetrics.Metric`` is one."""

    def update(self, outputs: Any, targets: Any) -> None:
        """Add a batch's outputs and targets (on the device)."""

    def compute(self) -> Any:
        """The metric over everything added since :meth:`reset`."""

    def reset(self) -> None:
        """Forget everything added."""


@runtime_checkable
class Task(StateTask, Protocol):
    """What the engine needs from a framework backend: the state part that plugins use too
    (:class:`hookline.run.StateTask`), and the loop part below, which only hookline's own
    loop calls (steps, backward, optimizer step, sharding, export).

    A task whose metrics include :class:`StatefulMetric` objects also has two methods the
    validator calls when present (they are optional, so they are not members of the protocol):
    ``reset_metrics()`` before a validation run, and ``compute_metrics()`` after it, returning
    each stateful metric's value over every batch, as a scalar in the framework's type, the
    same on every process.

    It may also say how many per-batch values (losses) a running mean keeps before summing
    them, ``values_per_sum`` (default 1024).

    A task whose device computes asynchronously may also have ``is_ready(value) -> bool``:
    whether a value it returned (a sum of losses) is computed, so that reading it would not
    wait.  The trainer then delivers a log interval's record once its loss is ready rather
    than wait for it (see :mod:`hookline.engine.trainer`); without it every record is
    delivered at its interval.
    """

    #: Optimizer steps happen every this many training batches (and at the end of an epoch).
    accumulate_grad_batches: int
    #: The export formats :meth:`export` accepts.
    export_formats: tuple[str, ...]

    def setup(self, stage: Stage) -> None:
        """Prepare for a phase: place the model on its device, create the optimizer, ..."""

    def teardown(self) -> None:
        """Release what :meth:`setup` acquired (a process group it created, ...)."""

    def abort(self) -> None:
        """Release what :meth:`setup` acquired after a failure, without waiting for other
        processes: no collective (another rank may never reach it), so that a failure on one
        rank ends every rank within seconds."""

    def shard(self, data: Iterable[Any], epoch: int | None) -> Iterable[Any]:
        """The part of ``data`` this process iterates: all of it in a single process.  In a
        distributed run, training data (``epoch`` given) is split and reshuffled per epoch,
        evaluation data (``epoch=None``) split without repeating a sample."""

    def weighted_sum(self, values: Sequence[Any], weights: Sequence[int]) -> Any:
        """``sum(value * weight)`` over the values, computed on their device in one go."""

    def train_mode(self, enabled: bool) -> None:
        """Switch the model between training (dropout, batch statistics) and evaluation."""

    def training_step(self, batch: Any) -> Any:
        """Return the batch's loss, with what :meth:`backward` needs to differentiate it."""

    def backward(self, loss: Any) -> None:
        """Accumulate the gradients of ``loss`` (scaled for gradient accumulation)."""

    def unscale_gradients(self) -> None:
        """Make the accumulated gradients final before a step: undo the loss scaling of mixed
        precision (nothing to do without it).  The engine calls it before
        ``on_before_optimizer_step`` when a plugin listens; :meth:`optimizer_step` then must
        not unscale again."""

    def optimizer_step(self) -> None:
        """Update the parameters from the accumulated gradients."""

    def zero_grad(self) -> None:
        """Clear the accumulated gradients."""

    def validation_step(self, batch: Any) -> Mapping[str, Any]:
        """Return the batch's metrics (each a mean over the batch), including ``loss``."""

    def predict_step(self, batch: Any) -> Any:
        """Return the post-processed predictions for a batch."""

    def batch_size(self, batch: Any) -> int:
        """The number of samples in ``batch`` (weights means over an epoch)."""

    def detach(self, value: Any) -> Any:
        """``value`` without its autograd history: still on its device, or a plain ``float``
        where reading it waits for nothing (torch's CPU), which the running means then sum at
        once instead of keeping it."""

    def export(self, format: str, path: Path) -> Path:
        """Write the model in ``format`` to ``path`` and return the file written."""


def split_metrics(
    metrics: Mapping[str, Any],
) -> tuple[dict[str, Callable[..., Any]], dict[str, StatefulMetric]]:
    """``metrics`` as ``(functions, stateful)``: the callables ``f(outputs, targets)`` averaged
    over samples, and the :class:`StatefulMetric` objects computed once over a whole run."""
    stateful = {
        name: metric for name, metric in metrics.items() if isinstance(metric, StatefulMetric)
    }
    functions = {name: metric for name, metric in metrics.items() if name not in stateful}
    return functions, stateful
