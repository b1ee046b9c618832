"""Built-in plugins, each an ordinary plugin that uses only hookline's public API.

A built-in is turned on or off by a setting named after its flag (``verbose=True``,
``save=False``, ...) given to any phase or on the command line; :data:`BUILTINS` is the table.
Turning one on registers it under its flag's name; turning it off unregisters it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Builtin:
    """A built-in plugin: the setting that turns it on, the class, and what it does."""

    flag: str
    target: str
    help: str

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
)

#: The built-ins ``hookline.Model`` and the ``hookline`` command turn on unless told otherwise.
DEFAULT_FLAGS: dict[str, bool] = {builtin.flag: True for builtin in BUILTINS}
