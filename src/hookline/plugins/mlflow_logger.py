"""MLflow: parameters, metrics and the best weights, through ``MlflowClient``.

The tracking store is ``mlflow_uri`` (a secret setting, since a URI may carry a password: it
is recorded redacted, and given again on resume), else ``$MLFLOW_TRACKING_URI``, else a SQLite
database next to the run directories (``runs/train/mlflow.db``, artifacts in
``runs/train/mlartifacts``); browse it with
``mlflow ui --backend-store-uri sqlite:///runs/train/mlflow.db``.  Each training run is an
MLflow run named after its directory, in the experiment ``mlflow_experiment``.  When training
ends, the best checkpoint (``weights/best.pt``, else the last one written) is logged
as an artifact under ``weights/``.  A resumed run continues the same MLflow run.

A tracking server that goes away costs at most ``mlflow_retries`` retries of
``mlflow_timeout`` seconds (unless the ``MLFLOW_HTTP_REQUEST_*`` variables say otherwise); the
logger then fails, which disables it with one line and lets the run go on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from hookline.plugins.support import Scalar, TrackerLogger
from hookline.run import Run

#: MLflow refuses longer parameter values.
MAX_PARAM_LENGTH = 6000


class MLflowLogger(TrackerLogger):
    """Logs a run to MLflow: settings as params, the metric stream, the best weights."""

    package = "mlflow"
    extra = "mlflow"
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "mlflow_uri": "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite next to runs)",
        "mlflow_experiment": "MLflow experiment name",
        "mlflow_retries": "retries of a failed request to the tracking server",
        "mlflow_timeout": "seconds a request to the tracking server may take",
    }
    #: A tracking URI may carry a user and password (``https://user:token@host``).
    SECRET = frozenset({"mlflow_uri"})

    def __init__(
        self,
        mlflow_uri: str = "",
        mlflow_experiment: str = "hookline",
        mlflow_retries: int = 2,
        mlflow_timeout: int = 10,
    ) -> None:
        super().__init__()
        self.mlflow_uri, self.mlflow_experiment = mlflow_uri, mlflow_experiment
        self.mlflow_retries, self.mlflow_timeout = mlflow_retries, mlflow_timeout
        self.client: Any = None
        self.weights: Path | None = None

    def start(self, run: Run, params: dict[str, Scalar]) -> None:
        from mlflow import MlflowClient

        assert run.save_dir is not None
        # MLflow's own defaults retry a dead server for minutes; the user's variables win
        for variable, value in (
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", self.mlflow_retries),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 1),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", self.mlflow_timeout),
        ):
            os.environ.setdefault(variable, str(value))
        parent = run.save_dir.resolve().parent
        uri = self.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        self.client = client = MlflowClient(tracking_uri=uri or f"sqlite:///{parent / 'mlflow.db'}")
        self.weights = None
        if self.run_id is not None:
            client.update_run(self.run_id, status="RUNNING")
            return
        experiment = client.get_experiment_by_name(self.mlflow_experiment)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = None if uri else (parent / "mlartifacts").as_uri()
            experiment_id = client.create_experiment(
                self.mlflow_experiment, artifact_location=location
            )
        self.run_id = client.create_run(
            experiment_id, run_name=run.save_dir.name, tags={"save_dir": str(run.save_dir)}
        ).info.run_id
        from mlflow.entities import Param

        client.log_batch(self.run_id, params=[
            Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()
        ])

    def log(self, metrics: dict[str, float], step: int, epoch: int, phase: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        x = step if phase == "train" else epoch
        self.client.log_batch(
            self.run_id, metrics=[Metric(name, value, now, x) for name, value in metrics.items()]
        )

    def on_model_save(self, path: Path) -> None:
        if self.weights is None or self.weights.name != "best.pt":
            self.weights = path

    def finish(self, failed: bool) -> None:
        if self.weights is not None and self.weights.is_file():
            self.client.log_artifact(self.run_id, str(self.weights), "weights")
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
        self.client = None
