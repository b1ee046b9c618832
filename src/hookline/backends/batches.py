"""How every backend reads a batch: ``(inputs, targets)``, ``(inputs,)``, a mapping with
``"inputs"`` and ``"targets"``, or bare inputs (for prediction)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def batch_parts(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of ``batch``; targets are None when it has none."""
    if isinstance(batch, (tuple, list)):  # first: the common case, and the cheap check
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
        raise ValueError(
            f"a batch tuple must be (inputs, targets) or (inputs,), got {len(batch)} items"
        )
    if isinstance(batch, Mapping):
        return batch["inputs"], batch.get("targets")
    return batch, None
