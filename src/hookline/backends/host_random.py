"""The host's global random generators (Python's and NumPy's), which every backend saves and
restores with its own: data pipelines and augmentations draw from them."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np


def python_numpy_random_state() -> dict[str, Any]:
    """Python's and NumPy's global generators, as ints and lists (no arrays to unpickle)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {
        "key": numpy_state["state"]["key"].tolist(), "pos": int(numpy_state["state"]["pos"])
    }
    return {"python": random.getstate(), "numpy": numpy_state}


def set_python_numpy_random_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`python_numpy_random_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
        "pos": numpy_state["state"]["pos"],
    }
    np.random.set_state(numpy_state)
