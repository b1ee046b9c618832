"""The ``hookline`` command.

::

    hookline train [key=value ...] [--config FILE.yaml]     train a recipe (recipe=module:Class;
                                                            the digits demo by default)
    hookline val [weights=PATH] [key=value ...]             validate saved weights
    hookline predict [weights=PATH] [source=val|FILE]       write predictions.csv
    hookline export [weights=PATH] [format=torchscript|pt2|onnx]
    hookline settings [train|val|predict|export] [--json]   every setting, default and owner
    hookline plugins [--json]                               what is installed, and its hooks
    hookline hooks [--markdown]                             the hook catalog

Every subcommand takes the plugin choice flags ``--plugins A,B`` (load only these entry
points), ``--disable-plugins A,B``, ``--no-plugins`` and ``--strict``; the four phases also
take ``--trace-hooks``.  Bad input ends with one line on standard error and exit status 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from hookline import hookspecs
from hookline.errors import UserError
from hookline.manager import ALIASES, PluginLoadError, PluginManager, PluginValidationError
from hookline.plugins import BUILTINS, DEFAULT_FLAGS
from hookline.recipe import DEFAULT_RECIPE, Recipe, RecipeOption, load_recipe
from hookline.settings import Options, Settings

PHASES = ("train", "val", "predict", "export")

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


class CommandError(UserError):
    """A problem with the user's input, reported as one line."""


# -- parsing -----------------------------------------------------------------------------------


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
    hooks = commands.add_parser("hooks", help="list every hook with its documentation")
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


# -- the plugin manager ------------------------------------------------------------------------


def make_manager(args: argparse.Namespace) -> PluginManager:
    manager = PluginManager()
    only = [] if args.no_plugins else args.plugins
    manager.load_entrypoint_plugins(only=only, block=args.disable_plugins, strict=args.strict)
    return manager


def trace_hooks(manager: PluginManager, stream: Any = None) -> Callable[[], None]:
    """Print each hook call that reaches a plugin: the hook, the call's duration, and each
    plugin that ran with its own duration (in call order).  Returns the function that stops.

    Each registered implementation is wrapped in a timer for the duration of the trace
    (pluggy calls ``HookImpl.function``), except ``wrapper=True`` ones, which are listed
    without a time.  Plugins registered after the trace started are listed without a time.
    """
    out = stream if stream is not None else sys.stderr
    calls: list[tuple[float, list[tuple[str, float]]]] = []
    originals: list[tuple[Any, Callable[..., Any]]] = []

    def timed(function: Callable[..., Any], plugin: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if calls:
                    calls[-1][1].append((plugin, time.perf_counter() - started))

        return run

    for name in manager.hook_names:
        for impl in getattr(manager.hook, name).get_hookimpls():
            if not (impl.wrapper or impl.hookwrapper):
                originals.append((impl, impl.function))
                setattr(impl, "function", timed(impl.function, impl.plugin_name))  # noqa: B010

    def before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        calls.append((time.perf_counter(), []))

    def after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Any) -> None:
        started, ran = calls.pop()
        elapsed = (time.perf_counter() - started) * 1000
        durations = dict(ran)
        plugins = ", ".join(
            f"{impl.plugin_name} {durations[impl.plugin_name] * 1000:.3f} ms"
            if impl.plugin_name in durations else impl.plugin_name
            for impl in reversed(impls)  # pluggy calls the last registered first
        )
        out.write(f"[hook] {hook_name:<28} {elapsed:9.3f} ms  {plugins}\n")

    undo_monitoring = manager.add_hookcall_monitoring(before, after)

    def undo() -> None:
        undo_monitoring()
        for impl, function in originals:
            setattr(impl, "function", function)  # noqa: B010

    return undo


# -- the phases --------------------------------------------------------------------------------


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
    options = manager.options(values)
    for name, default, kind, help_text in COMMAND_OPTIONS[command]:
        options.add(name, default, type=kind, help=help_text, owner="hookline " + command)
    return options


def resolve(
    manager: PluginManager,
    command: str,
    given: Mapping[str, Any],
    recorded: Mapping[str, Any] | None = None,
) -> tuple[Settings, dict[str, Any]]:
    """Check every value against the command's and the plugins' options.

    Precedence, lowest first: the built-ins that are on by default, ``recorded`` (the settings
    a checkpoint was trained with, for the options that exist here), ``given`` (the user's).
    Returns the resolved settings and the values meant for plugins (not the command's own).
    """
    recorded = recorded or {}
    flags = {**DEFAULT_FLAGS, **{k: v for k, v in recorded.items() if k in DEFAULT_FLAGS}}
    options = command_options(manager, command, {**flags, **given})
    own = COMMAND_OPTIONS[command]
    inherited = {
        key: value for key, value in recorded.items()
        if key in options and key not in RUN_SPECIFIC
    }
    values = {**flags, **inherited, **given}
    settings = options.resolve(values)
    own_names = {name for name, *_ in own}
    return settings, {key: value for key, value in values.items() if key not in own_names}


#: Settings of one command run that a later run does not inherit from a checkpoint.
RUN_SPECIFIC = frozenset({"resume", "weights", "format", "source"})


def latest_weights(project: Path) -> Path:
    candidates = sorted(
        (project / "train").glob("*/weights/last.pt"), key=lambda path: path.stat().st_mtime
    )
    if not candidates:
        raise CommandError(
            f"no weights given and none found under {project / 'train'}: "
            "run `hookline train` first or pass weights=PATH"
        )
    return candidates[-1]


def run_phase(command: str, args: argparse.Namespace) -> int:
    from hookline.api import Model
    from hookline.plugins.checkpoint import load_checkpoint

    given = parse_settings(args.settings, args.config)
    checkpoint: dict[str, Any] | None = None
    if command == "train":
        if given.get("resume"):
            checkpoint = load_checkpoint(str(given["resume"]))
    else:
        weights = given.get("weights")
        project = Path(str(given.get("project", "runs")))
        path = Path(str(weights)) if weights not in (None, "") else latest_weights(project)
        checkpoint = load_checkpoint(path)
        given["weights"] = str(path)
    recorded = checkpoint.get("args", {}) if checkpoint is not None else {}
    spec = str(given.get("recipe") or recorded.get("recipe") or DEFAULT_RECIPE)
    manager, recipe = prepared_manager(args, spec)
    settings, plugin_values = resolve(manager, command, given, recorded)
    undo = trace_hooks(manager) if args.trace_hooks else None
    try:
        if command == "train":
            train, val = recipe.data(settings)
            model = Model(recipe.task(settings), manager=manager)
            own = {name: settings[name] for name, *_ in COMMAND_OPTIONS["train"]}
            model.train(train, val, **own, **plugin_values)
        else:
            assert checkpoint is not None
            model = Model(recipe.task_from_weights(settings, checkpoint["task"]), manager=manager)
            if command == "val":
                _, val = recipe.data(settings)
                if val is None:
                    raise CommandError(f"recipe {spec!r} has no validation data")
                model.validate(val, **plugin_values)
            elif command == "predict":
                model.predict(recipe.predict_inputs(settings, settings["source"]), **plugin_values)
            else:
                weights_path = Path(settings["weights"])
                artifact = model.export(
                    settings["format"], weights_path.with_suffix(""), **plugin_values
                )
                print(f"exported {settings['format']} to {artifact}")
    finally:
        if undo is not None:
            undo()
    return 0


# -- settings, plugins and hooks ---------------------------------------------------------------


def list_settings(args: argparse.Namespace) -> int:
    manager, _ = prepared_manager(args, args.recipe)
    declared = command_options(manager, args.for_command, DEFAULT_FLAGS)
    # the command's own first, then the recipe's and the plugins'
    options = sorted(declared, key=lambda option: not option.owner.startswith("hookline "))
    if args.json:
        rows = [
            {"name": o.name, "default": o.default, "type": o.type.__name__, "owner": o.owner,
             "help": o.help}
            for o in options
        ]
        print(json.dumps(rows, indent=2))
        return 0
    defaults = ["-" if option.default is None else repr(option.default) for option in options]
    name_width = max(len(option.name) for option in options)
    default_width = max(len(default) for default in defaults)
    owner_width = max(len(option.owner) for option in options)
    for option, default in zip(options, defaults, strict=True):
        print(f"{option.name:<{name_width}}  {default:<{default_width}}  "
              f"{option.type.__name__:<5}  {option.owner:<{owner_width}}  {option.help}")
    return 0



def list_plugins(args: argparse.Namespace) -> int:
    manager = make_manager(args)
    manager.options(DEFAULT_FLAGS)  # registers the built-ins that are on by default
    infos = [asdict(info) for info in manager.list_plugins()]
    flags = {builtin.flag: builtin.help for builtin in BUILTINS}
    skipped = [str(problem) for problem in manager.load_errors]
    blocked = manager.blocked_names()
    if args.json:
        print(json.dumps({"plugins": infos, "flags": flags, "skipped": skipped,
                          "blocked": blocked}, indent=2))
        return 0
    header = ("NAME", "SOURCE", "DISTRIBUTION", "VERSION", "HOOKS")
    rows = [
        (i["name"], i["source"], i["distribution"] or "-", i["version"] or "-",
         ", ".join(i["hooks"]))
        for i in infos
    ]
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(4)]
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        print("  ".join([*cells, row[4]]))
    for default in (True, False):
        described = ", ".join(
            f"{flag} ({text})" for flag, text in flags.items() if DEFAULT_FLAGS[flag] is default
        )
        print(f"\nbuilt-in flags {'on' if default else 'off'} by default (key=true|false): "
              f"{described}")
    for name in blocked:
        print(f"blocked: {name}")
    for problem in skipped:
        print(f"skipped: {problem}")
    return 0


def catalog() -> list[tuple[str, list[str]]]:
    """The hook names grouped by the section banners of hookspecs.py, in file order."""
    sections: list[tuple[str, list[str]]] = []
    lines = inspect.getsource(hookspecs).splitlines()
    for index, line in enumerate(lines):
        if line.startswith("# ---") and index + 2 < len(lines) and lines[index + 2].startswith(
            "# ---"
        ):
            sections.append((lines[index + 1].lstrip("# ").strip(), []))
        match = re.match(r"def (\w+)\(", line)
        if match and sections:
            sections[-1][1].append(match.group(1))
    return sections


def signature(name: str) -> str:
    function = getattr(hookspecs, name)
    parameters = inspect.signature(function).parameters
    return f"{name}({', '.join(parameters)})"


def show_hooks(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(hooks_markdown())
        return 0
    for section, names in catalog():
        print(f"== {section} ==")
        for name in names:
            print(f"\n{signature(name)}")
            doc = inspect.getdoc(getattr(hookspecs, name)) or ""
            print("    " + doc.replace("\n", "\n    ").rstrip())
        print()
    return 0


def hooks_markdown() -> str:
    """The hook reference page (docs/hooks.md), generated from hookspecs.py."""
    parts = [
        "# Hook reference\n",
        "Generated by `hookline hooks --markdown` from `src/hookline/hookspecs.py`; "
        "do not edit by hand.\n",
        "An implementation takes any subset of a hook's arguments, by name, without defaults. "
        "Aliases: "
        + ", ".join(f"`{alias}` = `{name}`" for alias, name in ALIASES.items())
        + ".\n",
    ]
    for section, names in catalog():
        parts.append(f"## {section}\n")
        for name in names:
            doc = inspect.getdoc(getattr(hookspecs, name)) or ""
            parts.append(f"### `{signature(name)}`\n\n{doc}\n")
    return "\n".join(parts)


# -- entry point -------------------------------------------------------------------------------

USER_ERRORS = (UserError, PluginLoadError, PluginValidationError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in PHASES:
            return run_phase(args.command, args)
        if args.command == "plugins":
            return list_plugins(args)
        if args.command == "settings":
            return list_settings(args)
        return show_hooks(args)
    except USER_ERRORS as error:
        print(f"hookline {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hookline {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `hookline hooks | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
