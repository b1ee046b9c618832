"""The validation phase: evaluate a task on data and report its metrics.

Per-batch values (the loss, metric functions) become sample-weighted means over the whole
set.  Stateful metrics (objects with ``update``/``compute``/``reset``, such as
``torchmetrics`` ones, for F1, AUC and the like, which no mean of per-batch values gives) are
the task's: the validator resets them first (``Task.reset_metrics``), the task updates them on
the device in each ``validation_step``, and their values over the whole set, synced over
processes, come from ``Task.compute_metrics`` at the end.  Both methods are optional: a task
without stateful metrics need not have them.

Hook order of :meth:`Validator.validate` (stand-alone)::

    hookline_add_options, hookline_configure
    on_val_start
    for each batch: on_val_batch_start, on_val_batch_end
    on_val_end, on_log(phase="val")
    teardown                     (on_exception first, if anything raised)

Inside :meth:`Trainer.fit` the same ``on_val_*`` sequence runs after ``on_train_epoch_end``,
without configuration, logging or teardown of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hookline.engine.metrics import Mean
from hookline.engine.phase import Phase
from hookline.run import ParentRun

if TYPE_CHECKING:
    from hookline.engine.trainer import Trainer


class Validator(Phase):
    """Evaluates a task; ``metrics`` holds ``val/<name>`` floats after a run.

    ``trainer`` is the :class:`Trainer` when validating inside ``fit``, else ``None``.
    """

    name = "val"
    trainer: ParentRun[Trainer] = ParentRun()

    def validate(self, data: Iterable[Any], /, **settings: Any) -> dict[str, float]:
        """Evaluate on ``data`` (an iterable of batches) and return the metrics.

        ``settings`` are checked against the options that plugins declare.
        """
        self._configure({}, settings)

        def run() -> dict[str, float]:
            self.task.setup("validate")
            self._join(self)
            metrics = self.evaluate(data)
            step = self.trainer.global_step if self.trainer is not None else 0
            self.call(
                "on_log", run=self, metrics=MappingProxyType(metrics), step=step, epoch=0,
                phase="val",
            )
            return metrics

        return self._guarded(run)

    def evaluate(self, data: Iterable[Any]) -> dict[str, float]:
        """The validation loop itself, without configuration or teardown (``fit`` uses it)."""
        task = self.task
        self.metrics = {}
        self.call("on_val_start", validator=self)
        task.train_mode(False)
        reset = getattr(task, "reset_metrics", None)
        if reset is not None:
            reset()
        means: dict[str, Mean] = {}
        for batch_idx, batch in enumerate(task.shard(data, None)):
            self.call("on_val_batch_start", validator=self, batch=batch, batch_idx=batch_idx)
            outputs = task.validation_step(batch)
            count = task.batch_size(batch)
            for key, value in outputs.items():
                means.setdefault(key, Mean(task)).add(task.detach(value), count)
            self.call(
                "on_val_batch_end", validator=self, batch=batch, batch_idx=batch_idx,
                outputs=outputs,
            )
        for key, mean in means.items():
            self.metrics[f"val/{key}"] = mean.result()
        compute = getattr(task, "compute_metrics", None)
        for key, value in (compute() if compute is not None else {}).items():
            self.metrics[f"val/{key}"] = task.to_float(value)
        self.call("on_val_end", validator=self, metrics=self.metrics)
        return self.metrics
