"""hookline: framework-agnostic lifecycle hooks for machine-learning work, on pluggy.

The public API.  Each name is imported when it is first used, so that ``import hookline``
stays light and importing one layer (``hookline.engine``) loads nothing above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hookline.lazy import lazy_exports

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "ALIASES": "hookline.hookspecs",
    "Callback": "hookline.manager",
    "CheckpointError": "hookline.errors",
    "Exporter": "hookline.engine",
    "HOOK_API_VERSION": "hookline.hookspecs",
    "HookDeprecationWarning": "hookline.manager",
    "Model": "hookline.api",
    "Options": "hookline.settings",
    "Phase": "hookline.engine",
    "PluginDisabledWarning": "hookline.manager",
    "PluginFailure": "hookline.manager",
    "PluginInfo": "hookline.manager",
    "PluginLoadError": "hookline.manager",
    "PluginLoadWarning": "hookline.manager",
    "PluginManager": "hookline.manager",
    "PluginValidationError": "hookline.manager",
    "Predictor": "hookline.engine",
    "Run": "hookline.run",
    "Settings": "hookline.settings",
    "SettingsError": "hookline.settings",
    "StateTask": "hookline.run",
    "Task": "hookline.engine",
    "Trainer": "hookline.engine",
    "TrainingRun": "hookline.run",
    "UnknownHookError": "hookline.manager",
    "UserError": "hookline.errors",
    "Validator": "hookline.engine",
    "default_manager": "hookline.manager",
    "every": "hookline.manager",
    "hookimpl": "hookline.manager",
    "hookspec": "hookline.manager",
    "once": "hookline.manager",
    "load_checkpoint": "hookline.engine",
}

__all__ = [
    "ALIASES",
    "HOOK_API_VERSION",
    "Callback",
    "CheckpointError",
    "Exporter",
    "HookDeprecationWarning",
    "Model",
    "Options",
    "Phase",
    "PluginDisabledWarning",
    "PluginFailure",
    "PluginInfo",
    "PluginLoadError",
    "PluginLoadWarning",
    "PluginManager",
    "PluginValidationError",
    "Predictor",
    "Run",
    "Settings",
    "SettingsError",
    "StateTask",
    "Task",
    "Trainer",
    "TrainingRun",
    "UnknownHookError",
    "UserError",
    "Validator",
    "__version__",
    "default_manager",
    "every",
    "hookimpl",
    "hookspec",
    "load_checkpoint",
    "once",
]


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:
    from hookline.api import Model
    from hookline.engine import (
        Exporter,
        Phase,
        Predictor,
        Task,
        Trainer,
        Validator,
        load_checkpoint,
    )
    from hookline.errors import CheckpointError, UserError
    from hookline.hookspecs import ALIASES, HOOK_API_VERSION
    from hookline.manager import (
        Callback,
        HookDeprecationWarning,
        PluginDisabledWarning,
        PluginFailure,
        PluginInfo,
        PluginLoadError,
        PluginLoadWarning,
        PluginManager,
        PluginValidationError,
        UnknownHookError,
        default_manager,
        every,
        hookimpl,
        hookspec,
        once,
    )
    from hookline.run import Run, StateTask, TrainingRun
    from hookline.settings import Options, Settings, SettingsError
