"""Comet: the run's settings as parameters and the metric stream as metrics.

Offline by default (``comet_mode=offline``): the experiment is archived as a zip file in the
run directory's ``comet/`` folder, to be sent later with ``comet upload``;
``comet_mode=online`` sends it directly (with ``COMET_API_KEY`` set).  Comet's automatic
logging (console, environment, git, framework hooks) is turned off: hookline's metric stream
is what it records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from hookline.plugins.support import Scalar, TrackerLogger
from hookline.run import Run

QUIET: dict[str, Any] = {
    "auto_output_logging": False, "auto_metric_logging": False, "auto_param_logging": False,
    "auto_histogram_weight_logging": False, "log_env_details": False, "log_git_metadata": False,
    "log_git_patch": False, "log_env_gpu": False, "log_env_host": False, "log_env_cpu": False,
    "log_code": False, "log_graph": False, "parse_args": False, "display_summary_level": 0,
}


#: Comet reads these at import: no framework patching, no crash reports, warnings only.
QUIET_ENVIRONMENT = {
    "COMET_DISABLE_AUTO_LOGGING": "1",
    "COMET_ERROR_TRACKING_ENABLE": "false",
    "COMET_LOGGING_CONSOLE": "WARNING",
}


class CometLogger(TrackerLogger):
    """Logs a run to Comet (an offline archive unless ``comet_mode=online``)."""

    package = "comet_ml"
    extra = "comet"
    MODES = ("offline", "online")
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "comet_project": "Comet project",
        "comet_mode": "offline or online",
    }

    def __init__(self, comet_project: str = "hookline", comet_mode: str = "offline") -> None:
        super().__init__()
        self.comet_project, self.comet_mode = comet_project, comet_mode
        self.experiment: Any = None

    def start(self, run: Run, params: dict[str, Scalar]) -> None:
        for variable, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(variable, value)
        import comet_ml

        assert run.save_dir is not None
        if self.comet_mode == "offline":
            self.experiment = comet_ml.OfflineExperiment(
                project_name=self.comet_project, offline_directory=str(run.save_dir / "comet"),
                **QUIET,
            )
        else:
            self.experiment = comet_ml.Experiment(project_name=self.comet_project, **QUIET)
        self.experiment.set_name(run.save_dir.name)
        self.experiment.log_parameters(params)

    def log(self, metrics: dict[str, float], step: int, epoch: int, phase: str) -> None:
        self.experiment.log_metrics(metrics, step=step, epoch=epoch)

    def finish(self, failed: bool) -> None:
        if failed:
            self.experiment.log_other("status", "failed")
        self.experiment.end()
        self.experiment = None
