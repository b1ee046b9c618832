"""The subcommands of ``hookline`` and :func:`main`, which reports user errors as one line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hookline.api import Model
from hookline.cli.callbacks import SETTING as CALLBACKS
from hookline.cli.callbacks import register_callbacks
from hookline.cli.new_plugin import write_plugin
from hookline.cli.parser import PHASES, CommandError, build_parser, parse_settings
from hookline.cli.reference import hooks_markdown, hooks_text
from hookline.cli.resolution import (
    COMMAND_OPTIONS,
    command_options,
    make_manager,
    prepared_manager,
    resolve,
)
from hookline.cli.trace import trace_hooks
from hookline.cli.weights import last_checkpoint, latest_weights
from hookline.engine import Task, load_checkpoint, read_header
from hookline.errors import CheckpointError, UserError, first_line
from hookline.flags import DEFAULT_FLAGS, apply_flags
from hookline.manager import PluginFailure, PluginLoadError, PluginManager, PluginValidationError
from hookline.plugins import BUILTINS
from hookline.plugins.summary import ERROR_LOG
from hookline.recipe import DEFAULT_RECIPE, Recipe, trusted_recipes
from hookline.settings import Settings


def checkpoint_for(command: str, given: dict[str, Any]) -> Path | None:
    """The checkpoint a command reads: ``weights=`` (else the latest run's best, which is
    printed) for ``val``,
    ``predict`` and ``export``; ``resume=PATH`` for ``train``, where ``resume=auto`` means the
    named run's own ``last.pt`` when there is one (a requeued job carries on), else a new run
    in that directory."""
    if command == "train":
        resume = given.get("resume")
        if resume == "auto":
            run = Path(str(given.get("project", "runs"))) / "train" / str(given.get("name", "exp"))
            last = last_checkpoint(run / "weights")  # last.pt, or a sharded last/
            if last is None:
                given.update(resume="", exist_ok=True)
                return None
            given["resume"] = str(last)
            return last
        return None if resume in (None, "") else Path(str(resume))
    weights = given.get("weights")
    if weights not in (None, ""):
        path = Path(str(weights))
    else:
        path = latest_weights(Path(str(given.get("project", "runs"))))
        which = "best" if path.stem == "best" else "last"
        print(f"weights: {path} (the latest run's {which}; weights=PATH to choose)")
    given["weights"] = str(path)
    return path


def recipe_spec(given: dict[str, Any], recorded: dict[str, Any], path: Path | None) -> str:
    """The recipe to build: the user's, else the checkpoint's when hookline may import it (the
    default, or one an installed package declares), else the default."""
    if given.get("recipe"):
        return str(given["recipe"])
    named = recorded.get("recipe")
    if not named:
        return DEFAULT_RECIPE
    if str(named) not in trusted_recipes():
        raise CommandError(
            f"{path} was trained with recipe {named!r}, which no installed package declares; "
            f"hookline never imports code that a checkpoint names: pass recipe={named} to "
            "use it"
        )
    return str(named)


def run_phase(command: str, args: argparse.Namespace) -> int:
    """``hookline train|val|predict|export``: the recipe's task and data through a phase.

    A checkpoint's settings (its header) are read before anything is built: ``val``,
    ``predict`` and ``export`` rebuild the recipe it was trained with, and ``resume=`` carries
    on with the run's settings, in the run's directory.  Its payload is then read by the
    recipe's task.  The user's own callbacks (``callbacks=``) are registered first; those a
    checkpoint records are never imported by themselves.  Returns the exit status: 0, 128 +
    the signal's number when a signal interrupted training (after its checkpoint), or 1 when
    a plugin's hook failed (:func:`plugin_failed`).
    """
    given = parse_settings(args.settings, args.config)
    path = checkpoint_for(command, given)
    recorded: dict[str, Any] = read_header(path)["args"] if path is not None else {}
    if command == "train" and path is not None and path.parent.name == "weights":
        given.setdefault("save_dir", str(path.parent.parent))  # the run the checkpoint is in
    spec = recipe_spec(given, recorded, path)
    manager, recipe = prepared_manager(args, spec)
    register_callbacks(manager, given.get(CALLBACKS))
    if command == "train" and recorded.get(CALLBACKS) and CALLBACKS not in given:
        warnings.warn(
            f"hookline: {path} was trained with {CALLBACKS}={recorded[CALLBACKS]}, which "
            f"hookline never imports because a checkpoint names it; pass {CALLBACKS}=... "
            "again to use them", UserWarning, stacklevel=1,
        )
    settings, plugin_values = resolve(manager, command, given, recorded)
    model: Model | None = None
    undo = None
    try:
        manager.configure(plugin_values)  # every plugin refuses a bad value before building
        undo = trace_hooks(manager) if args.trace_hooks else None
        if command == "train":
            train, val = recipe.data(settings)
            model = Model(recipe.task(settings), manager=manager)
            own = {name: settings[name] for name, *_ in COMMAND_OPTIONS["train"]}
            model.train(train, val, **own, **plugin_values)
            return interrupted_status(model, manager)
        assert path is not None
        checkpoint = load_checkpoint(path, recipe.task(settings))
        model = Model(weighted_task(recipe, settings, checkpoint, path), manager=manager)
        if command == "val":
            _, val = recipe.data(settings)
            if val is None:
                raise CommandError(f"recipe {spec!r} has no validation data")
            model.validate(val, **plugin_values)
        elif command == "predict":
            model.predict(recipe.predict_inputs(settings, settings["source"]), **plugin_values)
        else:
            format = settings["format"] or model.task.export_formats[0]
            artifact = model.export(format, path.with_suffix(""), **plugin_values)
            print(f"exported {format} to {artifact}")
    except Exception as error:
        failure = None if isinstance(error, USER_ERRORS) else manager.failure_of(error)
        if failure is None:
            raise
        trainer = model.trainer if model is not None else None
        return plugin_failed(failure, error, trainer.save_dir if trainer else None, args)
    finally:
        if undo is not None:
            undo()
    return 0


def plugin_failed(
    failure: PluginFailure, error: BaseException, save_dir: Path | None,
    args: argparse.Namespace,
) -> int:
    """A plugin's hook raised ``error`` and ended the command: one line on standard error
    naming the plugin, its distribution, the hook and the error, pointing to the run's
    ``error.log`` when there is one; the traceback itself only with ``--traceback`` (or
    ``HOOKLINE_TRACEBACK=1``), for the plugin's author.  Returns the exit status, 1."""
    show = args.traceback or os.environ.get(TRACEBACK_ENV, "").lower() not in ("", "0", "false")
    if show:
        traceback.print_exception(error, file=sys.stderr)
    log = save_dir / ERROR_LOG if save_dir is not None else None
    if log is not None and log.is_file():
        where = f"; traceback in {log}"
    else:
        where = "" if show else "; --traceback prints its traceback"
    print(f"hookline: {failure}{where}", file=sys.stderr)
    return 1


def weighted_task(
    recipe: Recipe, settings: Settings, checkpoint: dict[str, Any], path: Path
) -> Task:
    """The recipe's task holding the checkpoint's weights.

    :raises CheckpointError: naming the file when the weights do not fit the recipe's model
        (other shapes, missing keys).
    """
    try:
        return recipe.task_from_weights(settings, checkpoint["task"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as error:
        if isinstance(error, UserError):
            raise
        first = first_line(error)
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit recipe {settings['recipe']!r}: "
            f"{type(error).__name__}: {first}"
        ) from None


def interrupted_status(model: Model, manager: PluginManager) -> int:
    """0 for a run that finished or stopped; for an interrupted one, a line on standard error
    saying how to resume, and 128 + the signal's number (1 when no signal is known)."""
    trainer = model.trainer
    if trainer is None or not trainer.interrupted:
        return 0
    received = getattr(manager.get_plugin("signals"), "received", None)
    last = last_checkpoint(trainer.save_dir / "weights") if trainer.save_dir else None
    resume = f"; resume with: hookline train resume={last}" if last is not None else ""
    print(f"hookline train: {trainer.stop_reason} at step {trainer.global_step}{resume}",
          file=sys.stderr)
    return 128 + int(received) if received is not None else 1


def list_settings(args: argparse.Namespace) -> int:
    manager, _ = prepared_manager(args, args.recipe)
    declared = command_options(manager, args.for_command, DEFAULT_FLAGS)
    # the command's own first, then the recipe's and the plugins'
    options = sorted(declared, key=lambda option: not option.owner.startswith("hookline "))
    if args.json:
        rows = [
            {"name": o.name, "default": o.default, "type": o.type.__name__, "owner": o.owner,
             "help": o.help, "choices": None if o.choices is None else list(o.choices)}
            for o in options
        ]
        print(json.dumps(rows, indent=2))
        return 0
    defaults = ["-" if option.default is None else repr(option.default) for option in options]
    name_width = max(len(option.name) for option in options)
    default_width = max(len(default) for default in defaults)
    owner_width = max(len(option.owner) for option in options)
    for option, default in zip(options, defaults, strict=True):
        choices = "" if option.choices is None else (
            f" (one of: {', '.join(map(str, option.choices))})"
        )
        print(f"{option.name:<{name_width}}  {default:<{default_width}}  "
              f"{option.type.__name__:<5}  {option.owner:<{owner_width}}  {option.help}{choices}")
    return 0


def list_plugins(args: argparse.Namespace) -> int:
    manager = make_manager(args)
    apply_flags(manager, DEFAULT_FLAGS)  # registers the built-ins that are on by default
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


def new_plugin(args: argparse.Namespace) -> int:
    root = write_plugin(args.name, args.dir)
    print(f"wrote {root}/: a plugin with a setting, a metric and state, its README and tests")
    print(f"next: pip install -e {root} && pytest {root}")
    return 0


def show_hooks(args: argparse.Namespace) -> int:
    if args.markdown:  # the reference page documents hookline's own catalog
        sys.stdout.write(hooks_markdown())
    else:
        sys.stdout.write(hooks_text(make_manager(args)))
    return 0


# -- entry point -------------------------------------------------------------------------------

USER_ERRORS = (UserError, PluginLoadError, PluginValidationError)
#: Set (to anything but 0 or false) to print a failing plugin's traceback, as --traceback does.
TRACEBACK_ENV = "HOOKLINE_TRACEBACK"


def one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    line: str | None = None,
) -> str:
    """A warning as the one line a person reads (hookline's own already say who speaks)."""
    text = str(message)
    return (text if text.startswith("hookline") else f"hookline: warning: {text}") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    formatwarning = warnings.formatwarning
    warnings.formatwarning = one_line_warning
    try:
        if args.command in PHASES:
            return run_phase(args.command, args)
        if args.command == "plugins":
            return list_plugins(args)
        if args.command == "settings":
            return list_settings(args)
        if args.command == "new-plugin":
            return new_plugin(args)
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
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
