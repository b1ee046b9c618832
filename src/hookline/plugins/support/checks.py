"""Checks plugins make on their settings and on the metric they monitor, so that a bad value
is one line naming the setting, before training or at the first epoch end at the latest."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hookline.settings import SettingsError


def require(name: str, value: Any, valid: bool, expected: str) -> None:
    """Raise :class:`SettingsError` ``setting 'name' must be <expected>, got value`` unless
    ``valid``."""
    if not valid:
        raise SettingsError(f"setting {name!r} must be {expected}, got {value!r}")


def at_least(name: str, value: float, minimum: float) -> None:
    """``value`` (a setting) must be a finite number >= ``minimum``."""
    require(name, value, math.isfinite(value) and value >= minimum, f"a number >= {minimum:g}")


def monitored(owner: str, monitor: str, metrics: Mapping[str, float]) -> float | None:
    """The value of ``monitor`` among an epoch's ``metrics``.

    ``None`` when it is a validation metric (``val/...``) and no validation ran this epoch.
    :raises SettingsError: when it is not reported although it could be (a misspelt name), with
        the metrics that exist.
    """
    value = metrics.get(monitor)
    if value is not None:
        return value
    validated = any(name.startswith("val/") for name in metrics)
    if monitor.startswith("val/") and not validated:
        return None
    raise SettingsError(
        f"{owner}: setting 'monitor' names {monitor!r}, which is not reported; the metrics "
        f"are: {', '.join(metrics) or 'none'}"
    )
