"""The tiny classifier and its data on each framework backend, for plugin tests that run
unchanged on torch and on JAX (the ``hookline_backend`` fixture parametrizes them).

The backends themselves live in ``hookline.backends.<name>.testing`` (frameworks are imported
nowhere else); this module names them and loads one only when asked.  See
:class:`hookline.backends.tiny.TinyBackend` for what a backend offers.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hookline.backends.tiny import TinyBackend

#: The framework backends, in the order tests run them.
NAMES = ("torch", "jax")
_FRAMEWORKS = {"torch": ("torch",), "jax": ("jax", "flax", "optax")}
_CLASSES = {"torch": "TorchBackend", "jax": "JaxBackend"}


def available(name: str) -> bool:
    """Whether the backend's framework is installed here."""
    return all(importlib.util.find_spec(module) is not None for module in _FRAMEWORKS[name])


def installed() -> list[str]:
    """The names of the backends whose framework is installed."""
    return [name for name in NAMES if available(name)]


def backend(name: str) -> TinyBackend:
    """The tiny classifier's backend called ``name`` (its framework is imported now)."""
    if name not in _CLASSES:
        raise ValueError(f"unknown backend {name!r}; the backends are: {', '.join(NAMES)}")
    module = importlib.import_module(f"hookline.backends.{name}.testing")
    made: TinyBackend = getattr(module, _CLASSES[name])()
    return made
