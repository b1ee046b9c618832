"""What the experiment-tracker loggers (TensorBoard, MLflow, Weights & Biases, Comet) share.

Each consumes the ``on_log`` stream and nothing else.  Metrics keep their names; the running
means of a log interval get the suffix ``_step`` (``train/loss_step``, plotted against
``step``, the optimizer steps) so they do not mix with the epoch's value of the same metric
(``train/loss``, plotted against the 1-based ``epoch``).  The run's settings (``args``, in
which secret settings are redacted) are the hyperparameters.

A tracker's package is an optional extra: asking for a logger whose package is missing fails
at configuration, before training starts, with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from hookline.errors import UserError
from hookline.manager import Callback
from hookline.plugins.support.formatting import plain
from hookline.run import Run, TrainingRun
from hookline.settings import Options, Settings, SettingsError

Scalar = int | float | str | bool


def hyperparameters(args: Mapping[str, Any]) -> dict[str, Scalar]:
    """``args`` flattened to scalars: nested keys joined with ``/``, lists and None as text."""
    flat: dict[str, Scalar] = {}
    for key, value in plain(args).items():
        if isinstance(value, Mapping):
            flat.update({f"{key}/{name}": item for name, item in hyperparameters(value).items()})
        elif isinstance(value, (int, float, str, bool)):
            flat[key] = value
        else:
            flat[key] = str(value)
    return flat


def series(metrics: Mapping[str, float], phase: str) -> dict[str, float]:
    """The names a tracker records ``metrics`` under (``_step`` for a log interval's means)."""
    if phase == "train":
        return {f"{name}_step": value for name, value in metrics.items()}
    return dict(metrics)


class TrackerLogger(Callback):
    """Base class: subclasses name their package and implement :meth:`start`, :meth:`log` and
    :meth:`finish`.  The tracker's run starts with training (or a stand-alone validation) and
    finishes in ``teardown`` with the status ``success`` or ``failed``.

    A subclass's constructor arguments listed in ``SETTINGS`` are its settings; a setting
    named ``<extra>_mode`` must be one of ``MODES``.  ``run_id`` is kept in checkpoints, so a
    tracker that can continue a run (``start`` reads it) does so after a resume.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    #: The modules that must be importable (comma-separated), and the extra that installs them.
    package = ""
    extra = ""
    SETTINGS: ClassVar[Mapping[str, str]] = {}
    #: Those of ``SETTINGS`` that are secret (a URI that may carry a password, an API key).
    SECRET: ClassVar[frozenset[str]] = frozenset()
    MODES: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.active = False
        self.run_id: str | None = None
        self._failed = False

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner=self.extra, secret=self.SECRET)

    def hookline_configure(self, settings: Settings) -> None:
        for module in self.package.split(","):
            if importlib.util.find_spec(module) is None:
                raise UserError(
                    f"{self.extra}=True needs the {module!r} package: "
                    f"pip install 'hookline[{self.extra}]'"
                )
        settings.apply(self, self.SETTINGS)
        mode = f"{self.extra}_mode"
        if self.MODES and getattr(self, mode) not in self.MODES:
            raise SettingsError(f"{mode} must be one of {', '.join(self.MODES)}")

    def state_dict(self) -> dict[str, Any]:
        """The tracker's run id, so that a resumed training run can log into the same run."""
        return {"run_id": self.run_id}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.run_id = state["run_id"]

    # -- what each tracker implements ------------------------------------------------------

    def start(self, run: Run, params: dict[str, Scalar]) -> None:
        """Open the tracker's run for ``run`` (which has a ``save_dir``)."""
        raise NotImplementedError

    def log(self, metrics: dict[str, float], step: int, epoch: int, phase: str) -> None:
        """Record ``metrics`` (already named by :func:`series`); ``epoch`` is 1-based."""
        raise NotImplementedError

    def finish(self, failed: bool) -> None:
        """Close the tracker's run."""
        raise NotImplementedError

    # -- hooks -------------------------------------------------------------------------------

    def _begin(self, run: Run) -> None:
        if run.save_dir is None:
            warnings.warn(
                f"{self.extra}: the run has no directory (save=False and no save_dir), so "
                "nothing is logged", stacklevel=2,
            )
            return
        self._failed = False
        self.start(run, hyperparameters(run.args))
        self.active = True

    def on_train_start(self, trainer: TrainingRun) -> None:
        self._begin(trainer)

    def on_val_start(self, validator: Run) -> None:
        if getattr(validator, "trainer", None) is None:
            self._begin(validator)

    def on_log(
        self, metrics: Mapping[str, float], step: int, epoch: int, phase: str
    ) -> None:
        if self.active:
            self.log(series(metrics, phase), step, epoch + 1, phase)

    def on_train_end(self, trainer: TrainingRun) -> None:
        if trainer.interrupted:
            self._failed = True  # a signal ended it: the tracker's run did not finish

    def on_exception(self) -> None:
        self._failed = True

    def teardown(self) -> None:
        if self.active:
            self.active = False
            self.finish(self._failed)
