"""Copies of a checkpoint's tree for a background write: what every backend's
``StateTask.host_copy`` shares.

A checkpoint is nested dicts, lists and tuples of plain values and a framework's arrays.  A copy
that a background thread can serialise while training goes on must share nothing that training
changes: every container is rebuilt, every array is copied to host memory by the backend's
function, and every other leaf is deep-copied (a plugin's state may hold a list it appends to).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

#: Copies one of a framework's arrays to host memory, or returns ``None`` for a value that is no
#: array of that framework (which is then deep-copied).
CopyArray = Callable[[Any], Any]


def copy_tree(value: Any, copy_array: CopyArray) -> Any:
    """``value`` with its containers rebuilt, its arrays copied by ``copy_array`` and its other
    leaves deep-copied.

    A plain ``dict`` stays a ``dict``, an ``OrderedDict`` (a torch ``state_dict``) stays one
    with its attributes (``_metadata``), any other mapping becomes a ``dict``; lists, tuples
    and named tuples keep their type.
    """
    memo: dict[int, Any] = {}
    return _copy(value, copy_array, memo)


def _copy(value: Any, copy_array: CopyArray, memo: dict[int, Any]) -> Any:
    if isinstance(value, Mapping):
        items = [(key, _copy(item, copy_array, memo)) for key, item in value.items()]
        if isinstance(value, OrderedDict):
            ordered: OrderedDict[Any, Any] = OrderedDict(items)
            ordered.__dict__.update(copy.deepcopy(vars(value), memo))
            return ordered
        return dict(items)
    if isinstance(value, list):
        return [_copy(item, copy_array, memo) for item in value]
    if isinstance(value, tuple):
        items = [_copy(item, copy_array, memo) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    array = copy_array(value)
    if array is not None:
        return array
    return copy.deepcopy(value, memo)


def leaves(value: Any) -> Iterator[Any]:
    """Every leaf of ``value``'s dicts, lists and tuples, in order (for a backend that starts
    all its transfers to the host before it collects them)."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from leaves(item)
    else:
        yield value
