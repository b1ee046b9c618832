"""Callbacks of the user's own on the command line: ``callbacks=my_callbacks.py:MyCallback``.

The setting names one or more plugins, comma-separated, each as

* ``path/to/file.py:NAME`` (or ``file.py:NAME``): ``NAME`` in a Python file of the user's;
* ``package.module:NAME``: ``NAME`` in an importable module;
* ``path/to/file.py`` or ``package.module``: the module itself, a plugin of ``@hookimpl``
  functions.

``NAME`` may be a :class:`~hookline.Callback` class (instantiated without arguments), an
instance, or a module of hook implementations.  Each is registered as any plugin is, so a
misspelt hook is refused at once.  Anything that goes wrong (no such file, a failing import, no
such attribute, a refused registration) is the user's error: one line naming the setting, exit
status 2.  A checkpoint records the setting with the run's others, but it is never imported
again because a checkpoint names it: on resume the user names the callbacks again, as with
recipes (:data:`hookline.cli.resolution.NOT_INHERITED`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from hookline.errors import UserError, first_line
from hookline.manager import Callback, PluginManager, PluginValidationError
from hookline.settings import Options, closest

#: The setting, and the name its declaring plugin is registered under.
SETTING = "callbacks"
OPTION_PLUGIN = "callbacks-option"


#: The modules run from the user's files, by name: a later command in the same process (the
#: plugin-author kit runs commands in-process) may run another file of that name in their place.
_FROM_FILES: dict[str, ModuleType] = {}


class CallbackError(UserError):
    """A callback named in ``callbacks=`` cannot be loaded or registered."""


class CallbacksOption(Callback):
    """Declares the ``callbacks`` setting, so that it is checked, listed by ``hookline
    settings`` and recorded with the run's other settings."""

    def hookline_add_options(self, options: Options) -> None:
        options.add(
            SETTING, "",
            help="plugins of your own, comma-separated: FILE.py:NAME or module:NAME (a class "
            "is instantiated without arguments), or a FILE.py or module of hook functions",
            owner="hookline",
        )


def callback_specs(value: Any) -> list[str]:
    """The specifications in the setting's value (comma-separated)."""
    return [word.strip() for word in str(value or "").split(",") if word.strip()]


def register_callbacks(manager: PluginManager, value: Any) -> list[str]:
    """Load and register every callback ``value`` names; returns the names they got.

    :raises CallbackError: naming the setting and the callback, for one that cannot be
        loaded, created or registered.
    """
    names = []
    for spec in callback_specs(value):
        plugin = load_callback(spec)
        try:
            name = manager.register(plugin)
        except PluginValidationError as error:
            raise CallbackError(f"setting {SETTING!r}: {spec!r} is refused: {error}") from None
        if name is not None:
            names.append(name)
    return names


def load_callback(spec: str) -> Any:
    """The plugin ``spec`` names (see the module's documentation); a class is instantiated.

    :raises CallbackError: for a missing file, a failing import, a missing attribute or a
        class that cannot be created without arguments.
    """
    source, colon, attribute = spec.rpartition(":")
    if not colon or not attribute.isidentifier():
        source, attribute = spec, ""
    module = _load_module(spec, source)
    if not attribute:
        return module
    if not hasattr(module, attribute):
        public = [name for name in vars(module) if not name.startswith("_")]
        hint = closest(attribute, public)
        fix = f"; did you mean {hint!r}?" if hint else ""
        raise CallbackError(
            f"setting {SETTING!r}: {source!r} has no attribute {attribute!r}{fix}"
        )
    target = getattr(module, attribute)
    if not inspect.isclass(target):
        return target
    try:
        return target()
    except Exception as error:
        raise CallbackError(
            f"setting {SETTING!r}: cannot create {spec}() without arguments: "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None


def _load_module(spec: str, source: str) -> ModuleType:
    """Import ``source``: a Python file when it ends in ``.py`` or holds a path separator,
    else a module by name."""
    try:
        if source.endswith(".py") or "/" in source or "\\" in source:
            return _load_file(Path(source))
        return importlib.import_module(source)
    except CallbackError:
        raise
    except Exception as error:
        raise CallbackError(
            f"setting {SETTING!r}: cannot load {spec!r}: {type(error).__name__}: "
            f"{first_line(error)}"
        ) from None


def _load_file(path: Path) -> ModuleType:
    """Run the file ``path`` as the module named after it (registered in ``sys.modules`` as an
    import would be, so that dataclasses and pickling in it work)."""
    if not path.is_file():
        raise CallbackError(f"setting {SETTING!r}: file {str(path)!r} does not exist")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and loaded is not _FROM_FILES.get(name):
        raise CallbackError(
            f"setting {SETTING!r}: file {str(path)!r} has the name of the module {name!r}, "
            "which is already imported; rename the file"
        )
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise CallbackError(f"setting {SETTING!r}: {str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = _FROM_FILES[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name], _FROM_FILES[name]
        raise
    return module
