"""hookline: framework-agnostic lifecycle hooks for machine-learning work, on pluggy."""

from hookline.api import Model
from hookline.engine import Exporter, Phase, Predictor, Trainer, Validator
from hookline.errors import UserError
from hookline.manager import (
    ALIASES,
    Callback,
    PluginInfo,
    PluginLoadError,
    PluginLoadWarning,
    PluginManager,
    PluginValidationError,
    default_manager,
    hookimpl,
)
from hookline.settings import Options, Settings, SettingsError

__version__ = "0.1.0"

__all__ = [
    "ALIASES",
    "Callback",
    "Exporter",
    "Model",
    "Options",
    "Phase",
    "PluginInfo",
    "PluginLoadError",
    "PluginLoadWarning",
    "PluginManager",
    "PluginValidationError",
    "Predictor",
    "Settings",
    "SettingsError",
    "Trainer",
    "UserError",
    "Validator",
    "__version__",
    "default_manager",
    "hookimpl",
]
