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
        "write the run directory: settings (args.yaml), weights and predictions",
    ),
)
