"""Which settings a command accepts, and where each value comes from.

Precedence, lowest first: the built-ins that are on by default, the settings a checkpoint was
trained with (for the options that exist here), the user's ``key=value`` words and YAML.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from hookline.flags import DEFAULT_FLAGS, apply_flags
from hookline.manager import PluginManager
from hookline.recipe import DEFAULT_RECIPE, Recipe, RecipeOption, load_recipe
from hookline.settings import Options, Settings

# The command's own settings, per phase: (name, default, type, help).
COMMAND_OPTIONS: dict[str, list[tuple[str, Any, type, str]]] = {
    "train": [
        ("epochs", 20, int, "number of epochs"),
        ("log_every_n_steps", 50, int, "log the running loss every N optimizer steps"),
        ("val_every_n_epochs", 1, int, "validate every N epochs"),
        ("save_dir", None, str, "run directory (default: project/train/nameN)"),
    ],
    "val": [("weights", None, str, "weights file (default: the latest training run's)")],
    "predict": [
        ("weights", None, str, "weights file (default: the latest training run's)"),
        ("source", "val", str, "'val' (the validation split of data) or a .npz/.csv file"),
    ],
    "export": [
        ("weights", None, str, "weights file (default: the latest training run's)"),
        ("format", "torchscript", str, "torchscript, pt2 or onnx"),
    ],
}

#: Settings of one command run that a later run does not inherit from a checkpoint.
RUN_SPECIFIC = frozenset({"resume", "weights", "format", "source"})


def make_manager(args: argparse.Namespace) -> PluginManager:
    """A plugin manager with the installed plugins the plugin-choice flags allow."""
    manager = PluginManager()
    only = [] if args.no_plugins else args.plugins
    manager.load_entrypoint_plugins(only=only, block=args.disable_plugins, strict=args.strict)
    return manager


def prepared_manager(
    args: argparse.Namespace, recipe_spec: str = DEFAULT_RECIPE
) -> tuple[PluginManager, Recipe]:
    """The plugin manager of a command, with the installed plugins and the recipe."""
    manager = make_manager(args)
    recipe = load_recipe(recipe_spec)
    manager.register(recipe, "recipe")
    manager.register(RecipeOption(), "recipe-option")
    return manager, recipe


def command_options(
    manager: PluginManager, command: str, values: Mapping[str, Any]
) -> Options:
    """Every setting ``command`` accepts: its own and those of the plugins that ``values``
    (built-in flags included) turn on."""
    apply_flags(manager, values)
    options = manager.options()
    for name, default, kind, help_text in COMMAND_OPTIONS[command]:
        options.add(name, default, type=kind, help=help_text, owner="hookline " + command)
    return options


def resolve(
    manager: PluginManager,
    command: str,
    given: Mapping[str, Any],
    recorded: Mapping[str, Any] | None = None,
) -> tuple[Settings, dict[str, Any]]:
    """Check every value against the command's and the plugins' options, in the precedence
    above (``recorded``: the settings of the checkpoint the command reads).

    Returns the resolved settings and the values meant for plugins (not the command's own).
    """
    recorded = recorded or {}
    flags = {**DEFAULT_FLAGS, **{k: v for k, v in recorded.items() if k in DEFAULT_FLAGS}}
    options = command_options(manager, command, {**flags, **given})
    inherited = {
        key: value for key, value in recorded.items()
        if key in options and key not in RUN_SPECIFIC
    }
    values = {**flags, **inherited, **given}
    settings = options.resolve(values)
    own_names = {name for name, *_ in COMMAND_OPTIONS[command]}
    return settings, {key: value for key, value in values.items() if key not in own_names}
