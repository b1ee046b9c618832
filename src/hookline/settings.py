"""Settings that plugins declare (``hookline_add_options``) and read (``hookline_configure``).

A setting has a name, a default and a type.  Values given by a user (Python keyword arguments,
``key=value`` words on the command line or a YAML file) are checked against the declared
options: an unknown name is refused with the closest known one, and a value of the wrong type
is refused with the type expected.  Strings from the command line are converted to the type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hookline.errors import UserError


class SettingsError(UserError, ValueError):
    """A setting is unknown or its value does not fit the setting's type."""


@dataclass(frozen=True)
class Option:
    """One declared setting: its name, default value, type, help text, owner, and the values
    it may take (None: any value of its type)."""

    name: str
    default: Any
    type: type
    help: str
    owner: str
    choices: tuple[Any, ...] | None = None

    def check(self, value: Any) -> Any:
        """``value`` converted to the type, if it is one of the choices; else SettingsError."""
        converted = _convert(self, value)
        if self.choices is not None and converted is not None and converted not in self.choices:
            allowed = ", ".join(repr(choice) for choice in self.choices)
            raise SettingsError(
                f"setting {self.name!r} must be one of {allowed}; got {converted!r}"
            )
        return converted


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}


def _convert(option: Option, value: Any) -> Any:
    """Return ``value`` as the option's type, converting strings; raise SettingsError."""
    if value is None:
        if option.default is None:
            return None
        raise SettingsError(f"setting {option.name!r} expects {option.type.__name__}, got None")
    if isinstance(value, str) and option.type is not str:
        text = value.strip()
        if option.default is None and text.lower() in _NONE:
            return None
        if option.type is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
        else:
            try:
                return option.type(text)
            except (TypeError, ValueError):
                pass
        raise SettingsError(
            f"setting {option.name!r} expects {option.type.__name__}, got {value!r}"
        )
    if option.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
        raise SettingsError(
            f"setting {option.name!r} expects {option.type.__name__}, "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate closest to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


class Options:
    """The registry of declared settings, filled by ``hookline_add_options`` implementations."""

    def __init__(self) -> None:
        self._options: dict[str, Option] = {}
        #: The owner of a setting declared without ``owner=``: the plugin manager sets it to
        #: the name of the plugin whose ``hookline_add_options`` is running.
        self.default_owner = ""

    def add(
        self,
        name: str,
        default: Any,
        *,
        help: str,
        type: type | None = None,
        owner: str = "",
        choices: Iterable[Any] | None = None,
    ) -> None:
        """Declare a setting.

        :param name: the setting's name, as users write it (``patience``, ``tensorboard``).
        :param default: its value when the user gives none.
        :param help: one line saying what it does.
        :param type: the value's type; taken from ``default`` unless the default is ``None``,
            where it is required.
        :param owner: who declared it (shown in errors and by ``hookline settings``); by
            default the registered name of the plugin declaring it.
        :param choices: the values it may take; any other is refused in one line naming them.

        Several plugins may declare the same name with the same type (``monitor`` is read by
        checkpointing, early stopping and the plateau scheduler): one user value then reaches
        all of them.  The first declaration's default and help are kept.
        """
        owner = owner or self.default_owner
        if type is None:
            if default is None:
                raise SettingsError(f"setting {name!r} has default None: give its type")
            type = default.__class__
        existing = self._options.get(name)
        if existing is not None:
            if existing.type is not type:
                raise SettingsError(
                    f"setting {name!r} is declared as {existing.type.__name__} by "
                    f"{existing.owner or 'unknown'} and as {type.__name__} by {owner or 'unknown'}"
                )
            return
        allowed = None if choices is None else tuple(choices)
        if allowed is not None and default is not None and default not in allowed:
            raise SettingsError(f"setting {name!r}: its default {default!r} is not one of its "
                                f"choices ({', '.join(map(repr, allowed))})")
        self._options[name] = Option(name, default, type, help, owner, allowed)

    def add_attributes(
        self,
        target: object,
        helps: Mapping[str, str],
        *,
        owner: str,
        types: Mapping[str, type] | None = None,
    ) -> None:
        """Declare one setting per entry of ``helps`` (name to help text), whose default is
        ``target``'s attribute of that name: a plugin's constructor arguments become the
        defaults of its settings.  ``types`` gives the type of those whose default is None."""
        for name, help_text in helps.items():
            kind = (types or {}).get(name)
            self.add(name, getattr(target, name), help=help_text, type=kind, owner=owner)

    def __contains__(self, name: object) -> bool:
        return name in self._options

    def __iter__(self) -> Iterator[Option]:
        return iter(self._options.values())

    def resolve(self, values: Mapping[str, Any]) -> Settings:
        """Check ``values`` against the options and return every setting's value.

        :raises SettingsError: for an unknown name (naming the closest option) or a value that
            does not fit its option's type.
        """
        resolved = {option.name: option.default for option in self._options.values()}
        for name, value in values.items():
            option = self._options.get(name)
            if option is None:
                hint = closest(name, set(self._options))
                suggestion = f"; did you mean {hint!r}?" if hint else ""
                raise SettingsError(f"unknown setting {name!r}{suggestion}")
            resolved[name] = option.check(value)
        return Settings(resolved, explicit=values.keys())


class Settings(Mapping[str, Any]):
    """Read-only resolved settings: a mapping that also allows ``settings.name``.

    ``explicit`` holds the names the user gave; the others have their defaults.  A plugin built
    with constructor arguments applies only explicit settings, so that its arguments stand
    unless the user overrides them (see :meth:`apply`).
    """

    def __init__(self, values: Mapping[str, Any], explicit: Iterable[str] = ()) -> None:
        self._values = dict(values)
        self.explicit = frozenset(explicit)

    def apply(self, target: object, names: Iterable[str]) -> None:
        """Set ``target.<name>`` for each of ``names`` that the user gave explicitly."""
        for name in names:
            if name in self.explicit:
                setattr(target, name, self._values[name])

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"
