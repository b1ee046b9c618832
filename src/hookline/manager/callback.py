"""Ways to write a plugin without decorators: :class:`Callback` subclasses and plain functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from hookline import hookspecs

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)
"""Marks a function or method as a hook implementation: ``@hookimpl`` or
``@hookimpl(tryfirst=True)``.  Not needed on the methods of a :class:`Callback`."""


class Callback:
    """Base class for callbacks: every method named after a hook (or an alias) implements it.

    >>> class PrintEpoch(Callback):
    ...     def on_epoch_end(self, trainer):
    ...         print(trainer.epoch, trainer.metrics)

    A method may still carry ``@hookimpl(tryfirst=True)`` (or ``trylast``, ``wrapper``) to
    choose its place in the call order.  Methods whose names start with ``on_`` must be hooks:
    a misspelt hook is an error at registration, not a callback that silently never runs.
    Set ``rank_zero_only = True`` on a callback that only writes or reports, so that it runs
    on rank zero alone in distributed training.

    A callback whose settings leave some of its hooks with nothing to do (a per-step hook of
    a feature that is off) lists them in :meth:`idle_hooks`: after configuration the engine
    does not call them, so an idle per-batch hook costs nothing.
    """

    #: Run only on rank zero in distributed training (see :mod:`hookline.distributed`).
    rank_zero_only: bool = False
    #: What a failure of this plugin does: ``raise`` ends the run cleanly, ``disable`` drops
    #: the plugin with one line and the run goes on (see :mod:`hookline.manager.faults`).
    error_policy: str = "raise"

    def idle_hooks(self) -> Iterable[str]:
        """The hooks this plugin implements but needs no call of under its current settings.

        Read when the dispatch table is rebuilt, which happens after every registration and
        after ``hookline_configure``.  Any plugin (not only a Callback) may define it.
        """
        return ()


class FunctionCallback:
    """Holds one plain function as the implementation of one hook (see ``add_callback``)."""

    def __init__(self, event: str, function: Callable[..., Any]) -> None:
        setattr(self, event, function)


#: Options of an implementation found without ``@hookimpl`` (a Callback method or a function).
PLAIN_IMPL: pluggy.HookimplOpts = {
    "wrapper": False,
    "hookwrapper": False,
    "optionalhook": False,
    "tryfirst": False,
    "trylast": False,
    "specname": None,
}
