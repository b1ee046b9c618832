"""The one-object Python API: train, validate, predict and export a task, in the spirit of
``model.train(data, epochs=3)``.

>>> model = hookline.Model(task, plugins=[MyCallback()])
>>> model.add_callback("on_fit_epoch_end", lambda trainer: ...)
>>> model.train(train_data, val_data, epochs=30)
>>> model.validate(val_data)
>>> model.export("onnx")

Data, formats and paths are positional, so that every keyword is free for settings (a
plugin may declare a setting named ``data``).  The four phases share one plugin manager, so
plugins and callbacks added once see every phase.  Unlike the bare engine, ``Model`` turns on
the built-ins a person expects (:data:`hookline.plugins.DEFAULT_FLAGS`, applied by
:mod:`hookline.flags`): console output, the
run directory, checkpoints (last and best), early stopping, learning-rate reporting, the NaN
guard and the time limit; pass ``early_stopping=False`` (and so on) to turn one off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hookline.engine import Exporter, Predictor, Task, Trainer, Validator
from hookline.flags import apply_flags_given, with_defaults
from hookline.manager import PluginManager, default_manager


class Model:
    """A task with its plugins, and the four phases as methods.

    :param task: the framework task (e.g. :class:`hookline.backends.torch.TorchTask`).
    :param plugins: plugins to register for every phase (an installed plugin given here is
        registered once: it takes the place of the copy its entry point loaded).
    :param manager: the plugin manager; by default one with the installed entry-point plugins
        (:func:`hookline.default_manager`), which a bare :class:`~hookline.Trainer` does not
        load.
    """

    def __init__(
        self, task: Task, plugins: Iterable[Any] = (), *, manager: PluginManager | None = None
    ) -> None:
        self.task = task
        self.manager = manager if manager is not None else default_manager()
        for plugin in plugins:
            self.manager.register(plugin)
        #: The trainer of the last :meth:`train` (its ``save_dir``, ``metrics``, ...).
        self.trainer: Trainer | None = None

    def add_callback(self, event: str, function: Callable[..., Any]) -> str:
        """Register a plain function for a hook (or alias), for every phase."""
        return self.manager.add_callback(event, function)

    def remove_callback(self, event: str, function: Callable[..., Any]) -> None:
        """Remove a function added with :meth:`add_callback`."""
        self.manager.remove_callback(event, function)

    def _with_defaults(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings with the default flags, whose built-ins are then turned on or off
        (also those that a given setting asks for: ``profile_memory=True``, the profile)."""
        values = with_defaults(settings)
        values.update(apply_flags_given(self.manager, values, settings))
        return values

    def train(
        self,
        data: Iterable[Any],
        val: Iterable[Any] | None = None,
        /,
        *,
        epochs: int = 10,
        **settings: Any,
    ) -> dict[str, float]:
        """Train; see :meth:`hookline.Trainer.fit` for the engine's own arguments
        (``save_dir``, ``log_every_n_steps``, ``val_every_n_epochs``) and plugin settings."""
        self.trainer = Trainer(self.task, manager=self.manager)
        return self.trainer.fit(data, val, epochs=epochs, **self._with_defaults(settings))

    def validate(self, data: Iterable[Any], /, **settings: Any) -> dict[str, float]:
        """Evaluate on ``data`` and return ``val/<metric>`` floats."""
        validator = Validator(self.task, manager=self.manager)
        return validator.validate(data, **self._with_defaults(settings))

    def predict(self, data: Iterable[Any], /, **settings: Any) -> list[Any]:
        """Predict every batch of ``data``; with ``save`` the rows go to ``predictions.csv``."""
        predictor = Predictor(self.task, manager=self.manager)
        return predictor.predict(data, **self._with_defaults(settings))

    def export(
        self, format: str | None = None, path: str | Path | None = None, /, **settings: Any
    ) -> Path:
        """Export the model as ``format`` (by default the task's first export format:
        ``torchscript`` for torch, ``stablehlo`` for JAX); by default next to the last
        training run's weights."""
        if format is None:
            format = self.task.export_formats[0]
        if path is None:
            trained = self.trainer.save_dir if self.trainer is not None else None
            path = trained / "weights" / "model" if trained is not None else Path("model")
        exporter = Exporter(self.task, manager=self.manager)
        return exporter.export(format, path, **self._with_defaults(settings))
