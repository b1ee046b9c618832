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


def format_metrics(metrics: Mapping[str, float]) -> str:
    """``name value`` pairs, four significant digits, in the metrics' order, leaving out
    the families in :data:`QUIET_PREFIXES`."""
    return "  ".join(
        f"{name} {value:.4g}" for name, value in metrics.items()
        if not name.startswith(QUIET_PREFIXES)
    )
