"""Compatibility between plugins and this hookline: the hook-API range a plugin declares, and
the hooks that were renamed.

A plugin declares the hook-API versions it works with as ``hookline_api = ">=1.1,<2"``
(comma-separated comparisons: ``>=``, ``>``, ``<=``, ``<``, ``==``, ``!=``, against versions
written ``MAJOR`` or ``MAJOR.MINOR``).  A plugin outside its range is refused at registration;
an installed one is skipped with one line (an error in strict mode).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

from hookline.hookspecs import HOOK_API_VERSION

#: The attribute in which a plugin declares the hook-API versions it supports.
API_ATTRIBUTE = "hookline_api"

_COMPARISONS: dict[str, Callable[[tuple[int, int], tuple[int, int]], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\d+)(?:\.(\d+))?\s*$")


class HookDeprecationWarning(FutureWarning):
    """A plugin implements a hook under a name that was renamed; the message names the new one.
    (A ``FutureWarning``, so that the people who run the plugin see it, not only its tests.)"""


def parse_version(text: str) -> tuple[int, int]:
    """``"1.1"`` as ``(1, 1)``; ``"2"`` as ``(2, 0)``."""
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def incompatibility(declared: object, version: str = HOOK_API_VERSION) -> str | None:
    """Why a plugin that declares ``declared`` (its ``hookline_api``) cannot run on hook API
    ``version``, or None when it can (or declares nothing).

    A declaration that is not a range of the form above is itself the reason."""
    if declared is None:
        return None
    if not isinstance(declared, str) or not declared.strip():
        return (f"declares {API_ATTRIBUTE} = {declared!r}, which is not a version range "
                "like '>=1,<2'")
    current = parse_version(version)
    for clause in declared.split(","):
        match = _CLAUSE.match(clause)
        if match is None:
            return (f"declares {API_ATTRIBUTE} = {declared!r}: {clause.strip()!r} is not a "
                    "comparison like '>=1.1' or '<2'")
        symbol, major, minor = match.groups()
        if not _COMPARISONS[symbol](current, (int(major), int(minor or 0))):
            return (f"supports hook API {declared}, and this hookline has hook API {version}; "
                    "install a version of the plugin made for it")
    return None
