"""The command line's words: subcommands, flags, and ``key=value`` settings over a YAML file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hookline.errors import UserError
from hookline.recipe import DEFAULT_RECIPE

PHASES = ("train", "val", "predict", "export")


class CommandError(UserError):
    """A problem with the user's input, reported as one line."""


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline", description="Lifecycle hooks for machine-learning training."
    )
    choice = argparse.ArgumentParser(add_help=False)
    group = choice.add_argument_group("plugin choice")
    group.add_argument("--plugins", type=_names, metavar="A,B", help="load only these plugins")
    group.add_argument(
        "--disable-plugins", type=_names, default=[], metavar="A,B", help="never load these"
    )
    group.add_argument("--no-plugins", action="store_true", help="load no installed plugin")
    group.add_argument("--strict", action="store_true", help="a plugin that fails is an error")
    phase = argparse.ArgumentParser(add_help=False)
    phase.add_argument("settings", nargs="*", metavar="key=value", help="settings")
    phase.add_argument("--config", type=Path, metavar="FILE.yaml", help="settings from YAML")
    phase.add_argument(
        "--trace-hooks", action="store_true",
        help="print every hook call, the plugins that ran and how long it took",
    )
    phase.add_argument(
        "--traceback", action="store_true",
        help="print the traceback of a plugin that fails (also: HOOKLINE_TRACEBACK=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "train": "train a model (the digits demo by default)",
        "val": "validate saved weights",
        "predict": "predict with saved weights",
        "export": "export saved weights (torchscript, pt2, onnx)",
    }
    for name in PHASES:
        commands.add_parser(name, parents=[choice, phase], help=helps[name])
    settings = commands.add_parser(
        "settings", parents=[choice], help="list every setting a command accepts"
    )
    settings.add_argument("for_command", nargs="?", choices=PHASES, default="train",
                          metavar="COMMAND", help="train (default), val, predict or export")
    settings.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="MODULE:CLASS",
                          help="list the settings of this recipe")
    settings.add_argument("--json", action="store_true", help="machine-readable output")
    listing = commands.add_parser("plugins", parents=[choice], help="list installed plugins")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    new_plugin = commands.add_parser(
        "new-plugin", help="write a new plugin package (hookline-NAME) that passes its tests"
    )
    new_plugin.add_argument("name", metavar="NAME", help="the plugin's name, e.g. gradnorm")
    new_plugin.add_argument("--dir", type=Path, default=Path("."), metavar="FOLDER",
                            help="where to write hookline-NAME/ (default: here)")
    hooks = commands.add_parser(
        "hooks", parents=[choice],
        help="list every hook with its documentation (with those installed plugins declare)",
    )
    hooks.add_argument("--markdown", action="store_true", help="write the reference page")
    return parser


def parse_settings(words: Sequence[str], config: Path | None) -> dict[str, Any]:
    """``key=value`` words over the settings of a YAML file."""
    values: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise CommandError(f"config file {str(config)!r} does not exist")
        try:
            loaded = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as error:
            raise CommandError(f"config file {str(config)!r} is not valid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise CommandError(f"config file {str(config)!r} must hold a mapping of settings")
        values.update(loaded)
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise CommandError(f"expected key=value, got {word!r}")
        values[key.strip()] = value
    return values
