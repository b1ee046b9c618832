"""Event filters: an implementation that asks to be called only every N steps or epochs, or
once, at a given step or epoch (Ignite's ``Events.ITERATION_COMPLETED(every=N)``).

>>> class Snapshot(hookline.Callback):
...     @hookline.every(steps=100)
...     def on_train_batch_end(self, trainer):
...         ...                            # called when trainer.global_step is 100, 200, ...

A filter is read once, at registration.  The manager keeps a filtered implementation out of
the dispatch table while it is not due, and the trainer tells the manager where the run is
only when a filter's due state changes (it compares ``global_step`` with the next such step,
one integer test per optimizer step).  So a filtered implementation costs nothing on the
steps when it is not due, and runs with no check of its own when it is.

``steps`` count optimizer steps (``trainer.global_step``, as the hook sees it): an
implementation filtered by ``every(steps=N)`` is due while ``global_step`` is a positive
multiple of N, so each hook of the training batch fires for it once per due step (once per
batch of that step under gradient accumulation).  ``epochs`` count epochs from 1:
``every(epochs=N)`` is due during the whole of epochs N, 2N, ..., validation included.
Filters count the training run's position: outside training (``hookline val``, ``predict``,
``export``) a filtered implementation is not called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MethodType
from typing import Any, TypeVar

from hookline.manager.attributes import static_value

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute a filter decorator sets on the function it marks.
FILTER_ATTRIBUTE = "hookline_filter"

#: Hooks that fire outside the training epochs (set-up, the end, the plugin system, prediction
#: and export): a filter on one of them would never be due, so it is refused at registration.
UNFILTERABLE = frozenset({
    "on_plugin_registered", "hookline_add_options", "hookline_configure",
    "on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start", "on_train_end",
    "on_exception", "teardown", "on_load_checkpoint",
    "on_predict_start", "on_predict_batch_start", "on_predict_postprocess_end",
    "on_predict_batch_end", "on_predict_end", "on_export_start", "on_export_end",
})


@dataclass(frozen=True)
class EventFilter:
    """When a filtered implementation is due: exactly one of the four counts is set."""

    every_steps: int = 0
    every_epochs: int = 0
    at_step: int = 0
    at_epoch: int = 0

    @property
    def counts_steps(self) -> bool:
        return bool(self.every_steps or self.at_step)

    def due(self, step: int | None, epoch: int | None) -> bool:
        """Whether the implementation is due at optimizer step ``step`` during epoch
        ``epoch`` (0-based; None for both outside a training epoch)."""
        if step is None or epoch is None:
            return False
        if self.every_steps:
            return step > 0 and step % self.every_steps == 0
        if self.at_step:
            return step == self.at_step
        if self.every_epochs:
            return (epoch + 1) % self.every_epochs == 0
        return epoch + 1 == self.at_epoch

    def next_change(self, step: int) -> int | None:
        """The next step after ``step`` at which :meth:`due` may change (None: never)."""
        if self.every_steps:
            if step > 0 and step % self.every_steps == 0:
                return step + 1
            return (step // self.every_steps + 1) * self.every_steps
        if self.at_step:
            return self.at_step if step < self.at_step else (
                step + 1 if step == self.at_step else None
            )
        return None

    def __str__(self) -> str:
        if self.every_steps:
            return f"every {self.every_steps} steps"
        if self.every_epochs:
            return f"every {self.every_epochs} epochs"
        return f"once at step {self.at_step}" if self.at_step else f"once at epoch {self.at_epoch}"


def _count(name: str, value: int | None) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"event filter: {name} must be an integer >= 1, got {value!r}")
    return value


def _marking(event_filter: EventFilter) -> Callable[[F], F]:
    def mark(function: F) -> F:
        setattr(function, FILTER_ATTRIBUTE, event_filter)
        return function

    return mark


def every(*, steps: int | None = None, epochs: int | None = None) -> Callable[[F], F]:
    """Call the decorated implementation only every ``steps`` optimizer steps, or only during
    every ``epochs``-th epoch (give one of the two).  Works on :class:`~hookline.Callback`
    methods, ``@hookimpl`` functions and ``add_callback`` functions alike."""
    if (steps is None) == (epochs is None):
        raise ValueError("every(): give steps=N or epochs=N")
    return _marking(EventFilter(every_steps=_count("steps", steps),
                                every_epochs=_count("epochs", epochs)))


def once(*, step: int | None = None, epoch: int | None = None) -> Callable[[F], F]:
    """Call the decorated implementation only at optimizer step ``step``, or only during epoch
    ``epoch`` (counted from 1); give one of the two."""
    if (step is None) == (epoch is None):
        raise ValueError("once(): give step=N or epoch=N")
    return _marking(EventFilter(at_step=_count("step", step), at_epoch=_count("epoch", epoch)))


def filter_of(function: Any) -> EventFilter | None:
    """The filter a function (or the function of a bound method) was marked with, if any;
    read statically, like every attribute hookline reads from a plugin."""
    marked = function.__func__ if isinstance(function, MethodType) else function
    found = static_value(marked, FILTER_ATTRIBUTE)
    return found if isinstance(found, EventFilter) else None


class FilterTable:
    """The filtered implementations of a manager and where the run is: which of them are due.

    Keyed by plugin and hook (a plugin has one implementation per hook).
    """

    def __init__(self) -> None:
        self.filters: dict[tuple[int, str], tuple[object, EventFilter]] = {}
        self.step: int | None = None
        self.epoch: int | None = None

    def add(self, plugin: object, hook: str, event_filter: EventFilter) -> None:
        self.filters[(id(plugin), hook)] = (plugin, event_filter)

    def forget(self, plugin: object) -> list[str]:
        """Drop ``plugin``'s filters; returns the hooks they were on."""
        hooks = [hook for (key, hook) in self.filters if key == id(plugin)]
        for hook in hooks:
            del self.filters[(id(plugin), hook)]
        return hooks

    def not_due(self, hook: str, plugin: object) -> bool:
        """Whether ``plugin``'s implementation of ``hook`` is filtered and not due now."""
        entry = self.filters.get((id(plugin), hook))
        return entry is not None and not entry[1].due(self.step, self.epoch)

    def move(self, step: int | None, epoch: int | None) -> tuple[set[str], int]:
        """Move to ``step`` and ``epoch``.  Returns the hooks whose due implementations
        changed, and the next step at which to move again (-1: none)."""
        changed = {
            hook for (_, hook), (_, event_filter) in self.filters.items()
            if event_filter.due(step, epoch) != event_filter.due(self.step, self.epoch)
        }
        self.step, self.epoch = step, epoch
        upcoming: Iterable[int | None] = (
            event_filter.next_change(step) for _, event_filter in self.filters.values()
            if event_filter.counts_steps and step is not None
        )
        following = [value for value in upcoming if value is not None]
        return changed, min(following, default=-1)
