"""Built-in plugins, each an ordinary plugin that uses only hookline's public API and reaches
the framework only through the Task protocol, so that every one runs on every backend.

A built-in is turned on or off by a setting named after its flag (``verbose=True``,
``save=False``, ...) given to :class:`hookline.Model` or on the command line
(:mod:`hookline.flags` applies them); :data:`BUILTINS` is the table.  Turning one on registers
it under its flag's name; turning it off unregisters it.  This module holds only the table: a
plugin's module is imported when its flag turns it on.  No plugin module imports another;
what they share is in :mod:`hookline.plugins.support`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Builtin:
    """A built-in plugin: the setting that turns it on, the class, what it does, and whether
    ``hookline train`` and :class:`hookline.Model` turn it on by default."""

    flag: str
    target: str
    help: str
    default: bool = True

    def create(self) -> Any:
        """Import and instantiate the plugin class."""
        module_name, _, class_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)()


BUILTINS: tuple[Builtin, ...] = (
    Builtin(
        "verbose",
        "hookline.plugins.console:ConsoleLogger",
        "print each epoch's metrics and where the run's files are",
    ),
    Builtin(
        "save",
        "hookline.plugins.run_files:RunFiles",
        "write the run directory: settings (args.yaml) and predictions",
    ),
    Builtin(
        "checkpoint",
        "hookline.plugins.checkpoint:ModelCheckpoint",
        "save last/best/periodic checkpoints; resume=PATH",
    ),
    Builtin(
        "early_stopping",
        "hookline.plugins.early_stopping:EarlyStopping",
        "stop when the monitored metric stops improving (patience=...)",
    ),
    Builtin(
        "lr_scheduler",
        "hookline.plugins.lr_scheduler:LRScheduler",
        "schedule the learning rate (schedule=...) and report it as lr",
    ),
    Builtin(
        "nan_guard",
        "hookline.plugins.nan_guard:NanGuard",
        "stop cleanly when the loss becomes NaN or infinite (checked at log intervals)",
    ),
    Builtin(
        "timer",
        "hookline.plugins.time_limit:TimeLimit",
        "stop cleanly before time_limit seconds, with a checkpoint",
    ),
    Builtin(
        "signals",
        "hookline.plugins.signals:GracefulStop",
        "stop on SIGTERM/SIGUSR1/SIGINT after the current step, with a resumable checkpoint",
    ),
    Builtin(
        "csv",
        "hookline.plugins.metric_files:CSVLogger",
        "write results.csv: one row of metrics per epoch",
    ),
    Builtin(
        "jsonl",
        "hookline.plugins.metric_files:JSONLogger",
        "write metrics.jsonl: every on_log record, one JSON object per line",
    ),
    Builtin(
        "progress",
        "hookline.plugins.progress:ProgressBar",
        "show batch progress, loss and rate (a bar on a terminal, plain lines otherwise)",
    ),
    Builtin(
        "plots",
        "hookline.plugins.plots:ResultsPlot",
        "draw results.png, a panel per metric: in the background every plot_interval s "
        "and at the end (needs Pillow)",
    ),
    Builtin(
        "resources",
        "hookline.plugins.resources:ResourceMonitor",
        "sample CPU, memory and GPU use in the background; per-epoch mean and max as metrics",
    ),
    Builtin(
        "summary",
        "hookline.plugins.summary:RunSummary",
        "print and save (summary.json) the run's summary: best epoch, time, stop reason, files",
    ),
    Builtin(
        "slow_plugins",
        "hookline.plugins.slow_plugins:SlowPluginCheck",
        "warn once when a plugin's per-batch hooks take over slow_plugin_share of the step",
    ),
    Builtin(
        "grad_norm",
        "hookline.plugins.grad_norm:GradNorm",
        "report the gradients' global norm before each step as train/grad_norm",
        default=False,
    ),
    Builtin(
        "profile",
        "hookline.plugins.profile:HookProfile",
        "time every plugin's hooks; print the table at the end and add it to summary.json",
        default=False,
    ),
    Builtin(
        "webhook",
        "hookline.plugins.webhook:Webhook",
        "POST Slack-compatible messages on chosen events (webhook_url=...)",
        default=False,
    ),
    Builtin(
        "tensorboard",
        "hookline.plugins.tensorboard_logger:TensorBoardLogger",
        "log metrics and hyperparameters to TensorBoard (extra: tensorboard)",
        default=False,
    ),
    Builtin(
        "mlflow",
        "hookline.plugins.mlflow_logger:MLflowLogger",
        "log params, metrics and the best weights to MLflow (extra: mlflow)",
        default=False,
    ),
    Builtin(
        "wandb",
        "hookline.plugins.wandb_logger:WandbLogger",
        "log config and metrics to Weights & Biases (extra: wandb; offline unless told)",
        default=False,
    ),
    Builtin(
        "comet",
        "hookline.plugins.comet_logger:CometLogger",
        "log parameters and metrics to Comet (extra: comet; offline unless told)",
        default=False,
    ),
)

#: The built-ins ``hookline.Model`` and the ``hookline`` command turn on unless told otherwise
#: (the others are off: flags like ``tensorboard=True`` turn them on).
DEFAULT_FLAGS: dict[str, bool] = {builtin.flag: builtin.default for builtin in BUILTINS}
