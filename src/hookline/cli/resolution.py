"""Which settings a command accepts, and where each value comes from.

Precedence, lowest first: the built-ins that are on by default, the settings a checkpoint was
trained with (for the options that exist here, and only those a checkpoint may supply: see
:func:`inheritable`; never a secret setting, which a checkpoint holds redacted), the user's
``key=value`` words and YAML.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Mapping
from typing import Any

from hookline.cli.callbacks import OPTION_PLUGIN, SETTING, CallbacksOption
from hookline.cli.parser import CommandError
from hookline.flags import DEFAULT_FLAGS, apply_flags, apply_flags_given
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
        ("format", None, str,
         "torchscript, pt2 or onnx (torch); stablehlo (JAX); default: the first of these"),
    ],
}

#: Settings of one command run that a later run does not inherit from a checkpoint.
RUN_SPECIFIC = frozenset({"resume", "weights", "format", "source"})
#: Settings a checkpoint never supplies, because a checkpoint is data: where to write, and
#: which code to import (the recipe, the user's own callbacks), are the user's to say.  A
#: value holding ``://`` (a URL, a tracker URI) is never inherited either: hookline contacts
#: nothing a file names.
NOT_INHERITED = RUN_SPECIFIC | {"save_dir", "project", "name", "exist_ok", "recipe", SETTING}


def inheritable(name: str, value: Any) -> bool:
    """Whether a setting recorded in a checkpoint may be carried into this command."""
    return name not in NOT_INHERITED and not (isinstance(value, str) and "://" in value)


def make_manager(args: argparse.Namespace) -> PluginManager:
    """A plugin manager with the installed plugins the plugin-choice flags allow.  A plugin
    that ``--plugins`` names is an error when it cannot be loaded (the user asked for it).

    :raises CommandError: for a name in ``--plugins`` that is a callback's specification.
    """
    for name in args.plugins or ():
        if ":" in name or name.endswith(".py"):
            raise CommandError(
                f"--plugins takes the names of installed plugins, and {name!r} is none; "
                f"a callback of your own is given as the setting callbacks={name}"
            )
    manager = PluginManager()
    only = [] if args.no_plugins else args.plugins
    manager.load_entrypoint_plugins(only=only, block=args.disable_plugins, strict=args.strict)
    return manager


def prepared_manager(
    args: argparse.Namespace, recipe_spec: str = DEFAULT_RECIPE
) -> tuple[PluginManager, Recipe]:
    """The plugin manager of a command, with the installed plugins, the recipe and the
    plugins that declare the ``recipe`` and ``callbacks`` settings."""
    manager = make_manager(args)
    recipe = load_recipe(recipe_spec)
    for reserved in ("recipe", "recipe-option", OPTION_PLUGIN):
        if manager.has_plugin(reserved):
            manager.refuse(reserved, "has a name hookline reserves; rename its entry point")
    manager.register(recipe, "recipe")
    manager.register(RecipeOption(), "recipe-option")
    manager.register(CallbacksOption(), OPTION_PLUGIN)
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
    # a checkpoint may turn built-ins off (as its run had them), never on: a flag could turn
    # on a plugin that writes elsewhere or contacts a server
    off = {k: v for k, v in recorded.items() if k in DEFAULT_FLAGS and v is False}
    flags = {**DEFAULT_FLAGS, **off}
    # a setting of a built-in that is off asks for it: profile_memory=true, the profile
    flags.update(apply_flags_given(manager, {**flags, **given}, given))
    options = command_options(manager, command, {**flags, **given})
    inherited = {}
    for key, value in recorded.items():
        option = options.get(key)
        if option is not None and option.secret:  # recorded redacted: never usable
            if value not in (None, "") and key not in given:
                warnings.warn(
                    f"hookline: {key} is a secret setting, which checkpoints do not keep: give "
                    f"it again ({key}=...) unless its environment variable holds it",
                    stacklevel=2,
                )
        elif option is not None and key not in DEFAULT_FLAGS and inheritable(key, value):
            inherited[key] = value  # a built-in's flag comes from ``off`` alone
    values = {**flags, **inherited, **given}
    settings = options.resolve(values)
    own_names = {name for name, *_ in COMMAND_OPTIONS[command]}
    return settings, {key: value for key, value in values.items() if key not in own_names}
