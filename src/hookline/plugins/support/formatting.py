"""Turning run data into text: plain (YAML/JSON-ready) values and metric lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plain(value: Any) -> Any:
    """``value`` made of str, int, float, bool, None, lists and dicts (paths become strings)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


#: Metric families left out of the console's epoch line (they are in the metric files).
QUIET_PREFIXES = ("resources/",)


#: The order of metric families in a printed line; other families follow, by name.
FAMILY_ORDER = ("train", "", "val")


def metric_order(name: str) -> tuple[int, str, bool, str]:
    """Where ``name`` goes in a printed line, whatever order a backend reported it in:
    ``train/...``, then unprefixed metrics (``lr``), then ``val/...``, then other families by
    name; within a family ``loss`` first, then the others by name."""
    family, slash, leaf = name.partition("/")
    if not slash:
        family, leaf = "", name
    rank = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return rank, family, leaf != "loss", leaf


def format_metrics(metrics: Mapping[str, float]) -> str:
    """``name value`` pairs, four significant digits, in :func:`metric_order`, leaving out
    the families in :data:`QUIET_PREFIXES`."""
    return "  ".join(
        f"{name} {metrics[name]:.4g}" for name in sorted(metrics, key=metric_order)
        if not name.startswith(QUIET_PREFIXES)
    )
