"""Settings that plugins declare (``hookline_add_options``) and read (``hookline_configure``).

A setting has a name, a default and a type.  Values given by a user (Python keyword arguments,
``key=value`` words on the command line or a YAML file) are checked against the declared
options: an unknown name is refused with the closest known one, and a value of the wrong type
is refused with the type expected.  Strings from the command line are converted to the type.

A setting declared ``secret`` (a webhook URL, a tracker URI that may carry a password, an API
key) is used where it is needed and written nowhere: a run records :meth:`Settings.public`, in
which each secret value is redacted (:func:`redact`), and messages show it redacted too.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hookline.errors import UserError


class SettingsError(UserError, ValueError):
    """A setting is unknown or its value does not fit the setting's type."""


@dataclass(frozen=True)
class Option:
    """One declared setting: its name, default value, type, help text, owner, the values it
    may take (None: any value of its type), and whether its value is a secret."""

    name: str
    default: Any
    type: type
    help: str
    owner: str
    choices: tuple[Any, ...] | None = None
    secret: bool = False

    def check(self, value: Any) -> Any:
        """``value`` converted to the type, if it is one of the choices; else SettingsError."""
        converted = _convert(self, value)
        if self.choices is not None and converted is not None and converted not in self.choices:
            allowed = ", ".join(repr(choice) for choice in self.choices)
            raise SettingsError(
                f"setting {self.name!r} must be one of {allowed}; got {self.shown(converted)}"
            )
        return converted

    def shown(self, value: Any) -> str:
        """``value`` as a message may show it: its ``repr``, or redacted for a secret."""
        return repr(redact(value) if self.secret else value)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def redact(value: Any) -> Any:
    """A secret as it may be written or shown: a URL as its scheme and host only
    (``https://hooks.slack.com/…``: no user, password, path or query), any other value as
    ``…``.  An empty value (``""`` or None: no secret given) stays as it is."""
    if value is None or value == "":
        return value
    text = str(value)
    scheme, separator, _ = text.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        return "…"
    try:
        host = urllib.parse.urlsplit(text).hostname or ""
    except ValueError:  # a malformed address (an unclosed IPv6 bracket): no host to show
        host = ""
    return f"{scheme}://{host}/…"


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", ""}


def _convert(option: Option, value: Any) -> Any:
    """Return ``value`` as the option's type, converting strings; raise SettingsError."""
    if value is None:
        if option.default is None:
            return None
        raise SettingsError(f"setting {option.name!r} expects {option.type.__name__}, got None")
    shown = option.shown(value)
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
        raise SettingsError(f"setting {option.name!r} expects {option.type.__name__}, got {shown}")
    if option.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
        raise SettingsError(
            f"setting {option.name!r} expects {option.type.__name__}, "
            f"got {type(value).__name__} {shown}"
        )
    return value


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate closest to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


#: What other training tools call some of hookline's settings (Ultralytics, Keras, Lightning,
#: Hugging Face): an unknown setting of these names suggests hookline's, where it exists.
ALIASES: Mapping[str, str] = {
    "learning_rate": "lr",
    "lr0": "lr",
    "max_epochs": "epochs",
    "num_train_epochs": "epochs",
    "num_epochs": "epochs",
    "n_epochs": "epochs",
    "batch_size": "batch",
    "per_device_train_batch_size": "batch",
    "accumulate_grad_batches": "accumulate",
    "gradient_accumulation_steps": "accumulate",
    "gradient_clip_val": "clip",
    "max_grad_norm": "clip",
    "early_stopping_patience": "patience",
    "logging_steps": "log_every_n_steps",
    "check_val_every_n_epoch": "val_every_n_epochs",
    "output_dir": "save_dir",
    "resume_from_checkpoint": "resume",
    "ckpt_path": "resume",
}


def suggestion(name: str, known: Iterable[str]) -> str | None:
    """The setting among ``known`` that a user who wrote ``name`` probably meant: the one
    :data:`ALIASES` gives, else the closest in spelling, else None."""
    known = set(known)
    alias = ALIASES.get(name)
    return alias if alias in known else closest(name, known)


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
        secret: bool = False,
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
        :param secret: its value is a credential (a webhook URL, a URI that may hold a
            password, an API key): the plugin reads it from :class:`Settings` as given, and
            everything a run writes or shows has it redacted (:meth:`Settings.public`).  A
            checkpoint does not keep it: a resumed run needs it given again.

        Several plugins may declare the same name with the same type (``monitor`` is read by
        checkpointing, early stopping and the plateau scheduler): one user value then reaches
        all of them.  The first declaration's default and help are kept; the setting is
        secret when any declaration says so.
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
            if secret and not existing.secret:
                self._options[name] = dataclasses.replace(existing, secret=True)
            return
        allowed = None if choices is None else tuple(choices)
        if allowed is not None and default is not None and default not in allowed:
            raise SettingsError(f"setting {name!r}: its default {default!r} is not one of its "
                                f"choices ({', '.join(map(repr, allowed))})")
        self._options[name] = Option(name, default, type, help, owner, allowed, secret)

    def add_attributes(
        self,
        target: object,
        helps: Mapping[str, str],
        *,
        owner: str,
        types: Mapping[str, type] | None = None,
        secret: Iterable[str] = (),
    ) -> None:
        """Declare one setting per entry of ``helps`` (name to help text), whose default is
        ``target``'s attribute of that name: a plugin's constructor arguments become the
        defaults of its settings.  ``types`` gives the type of those whose default is None;
        ``secret`` names those that are secret (see :meth:`add`)."""
        secret = frozenset(secret)
        for name, help_text in helps.items():
            kind = (types or {}).get(name)
            self.add(
                name, getattr(target, name), help=help_text, type=kind, owner=owner,
                secret=name in secret,
            )

    def get(self, name: str) -> Option | None:
        """The option named ``name``, or None."""
        return self._options.get(name)

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
                hint = suggestion(name, self._options)
                meant = f"; did you mean {hint!r}?" if hint else ""
                raise SettingsError(f"unknown setting {name!r}{meant}")
            resolved[name] = option.check(value)
        secret = [option.name for option in self._options.values() if option.secret]
        return Settings(resolved, explicit=values.keys(), secret=secret)


class Settings(Mapping[str, Any]):
    """Read-only resolved settings: a mapping that also allows ``settings.name``.

    ``explicit`` holds the names the user gave; the others have their defaults.  A plugin built
    with constructor arguments applies only explicit settings, so that its arguments stand
    unless the user overrides them (see :meth:`apply`).  ``secret`` holds the names of the
    secret settings: the mapping gives their values as given (for the plugin that needs
    them); :meth:`public` is what may be written or shown.
    """

    def __init__(
        self, values: Mapping[str, Any], explicit: Iterable[str] = (), secret: Iterable[str] = ()
    ) -> None:
        self._values = dict(values)
        self.explicit = frozenset(explicit)
        self.secret = frozenset(secret)

    def apply(self, target: object, names: Iterable[str]) -> None:
        """Set ``target.<name>`` for each of ``names`` that the user gave explicitly."""
        for name in names:
            if name in self.explicit:
                setattr(target, name, self._values[name])

    def public(self) -> dict[str, Any]:
        """Every setting, each secret one redacted (:func:`redact`): what a run records (its
        ``args``: ``args.yaml``, checkpoint headers, trackers' hyperparameters)."""
        return {
            name: redact(value) if name in self.secret else value
            for name, value in self._values.items()
        }

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
        return f"Settings({self.public()!r})"
