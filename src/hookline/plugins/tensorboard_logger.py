"""TensorBoard: scalars and hyperparameters, in the run directory (``tensorboard --logdir runs``).

Epoch metrics are plotted against the epoch, log-interval means (``..._step``) against the
optimizer step.  The hyperparameters (the run's settings) are written once the first epoch's
metrics exist, with those metrics as the HParams dashboard's columns.  Events are written with
the ``tensorboard`` package's own event writer and protocol buffers, so this logger needs no
deep-learning framework (the ``tensorboard`` extra installs the package).
"""

from __future__ import annotations

import time
from typing import Any

from hookline.plugins.support import Scalar, TrackerLogger
from hookline.run import Run


class TensorBoardLogger(TrackerLogger):
    """Writes TensorBoard event files into the run directory."""

    package = "tensorboard"
    extra = "tensorboard"

    def __init__(self) -> None:
        super().__init__()
        self.writer: Any = None
        self._params: dict[str, Scalar] | None = None

    def start(self, run: Run, params: dict[str, Scalar]) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.writer = EventFileWriter(str(run.save_dir))
        self._params = params

    def _write(self, summary: Any, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self.writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def log(self, metrics: dict[str, float], step: int, epoch: int, phase: str) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        x = step if phase == "train" else epoch
        self._write(
            Summary(value=[
                Summary.Value(tag=name, simple_value=value) for name, value in metrics.items()
            ]),
            x,
        )
        if phase != "train":
            if self._params is not None:
                for summary in hparams_summaries(self._params, list(metrics)):
                    self._write(summary, 0)
                self._params = None
            self.writer.flush()

    def finish(self, failed: bool) -> None:
        self.writer.close()
        self.writer = None


def hparams_summaries(params: dict[str, Scalar], metric_names: list[str]) -> list[Any]:
    """The HParams plugin's experiment and session-start summaries: ``params`` as the
    hyperparameters (numbers, strings, booleans) and ``metric_names`` as its metric columns."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    session = plugin_data_pb2.SessionStartInfo()
    infos = []
    for name, value in params.items():
        if isinstance(value, bool):
            session.hparams[name].bool_value = value
            kind = api_pb2.DATA_TYPE_BOOL
        elif isinstance(value, (int, float)):
            session.hparams[name].number_value = value
            kind = api_pb2.DATA_TYPE_FLOAT64
        else:
            session.hparams[name].string_value = str(value)
            kind = api_pb2.DATA_TYPE_STRING
        infos.append(api_pb2.HParamInfo(name=name, type=kind))
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metric_names],
    )

    def summary(tag: str, data: Any) -> Any:
        content = data.SerializeToString()
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content)
        return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])

    version = metadata.PLUGIN_DATA_VERSION
    return [
        summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(
            experiment=experiment, version=version)),
        summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(
            session_start_info=session, version=version)),
    ]
