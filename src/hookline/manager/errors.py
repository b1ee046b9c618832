"""The errors of plugin registration and discovery."""

from __future__ import annotations

import pluggy


class PluginValidationError(pluggy.PluginValidationError):
    """A plugin cannot be registered; the message names the plugin, the hook and the fix."""


class UnknownHookError(LookupError):
    """A hook was called by a name that is neither a hook nor an alias of one."""


class PluginLoadError(Exception):
    """An entry-point plugin failed to import or to register.

    :ivar entry_point: the entry point's name (``None`` for a name asked for but not installed).
    :ivar distribution: the distribution that declares it, as ``name version``.
    :ivar error: the underlying exception, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        entry_point: str | None = None,
        distribution: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.entry_point = entry_point
        self.distribution = distribution
        self.error = error


class PluginLoadWarning(UserWarning):
    """An entry-point plugin was skipped because it could not be loaded."""
