"""The prediction phase.

Hook order of :meth:`Predictor.predict`::

    hookline_add_options, hookline_configure
    on_predict_start
    for each batch:
        on_predict_batch_start
        on_predict_postprocess_end   (after task.predict_step)
        on_predict_batch_end         (after the outputs were collected)
    on_predict_end
    teardown                         (always; on_exception first when something raised)

A stop requested with :meth:`~Phase.request_stop` ends prediction after the current batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hookline.engine.phase import Phase


class Predictor(Phase):
    """Runs a task's ``predict_step`` over data; ``results`` holds each batch's outputs."""

    name = "predict"

    def predict(self, data: Iterable[Any], /, **settings: Any) -> list[Any]:
        """Predict every batch of ``data`` and return the list of per-batch outputs."""
        self._configure({}, settings)
        self.results: list[Any] = []
        return self._guarded(lambda: self._predict(data))

    def _predict(self, data: Iterable[Any]) -> list[Any]:
        task = self.task
        task.setup("predict")
        self._join()
        task.train_mode(False)
        self.call("on_predict_start", predictor=self)
        for batch_idx, batch in enumerate(data):
            self.call("on_predict_batch_start", predictor=self, batch=batch, batch_idx=batch_idx)
            outputs = task.predict_step(batch)
            self.call(
                "on_predict_postprocess_end", predictor=self, outputs=outputs, batch=batch,
                batch_idx=batch_idx,
            )
            self.results.append(outputs)
            self.call(
                "on_predict_batch_end", predictor=self, outputs=outputs, batch=batch,
                batch_idx=batch_idx,
            )
            if self.should_stop:
                break
        self.call("on_predict_end", predictor=self)
        return self.results
