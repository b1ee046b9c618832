"""The host's global random generators (Python's and NumPy's), which every backend saves and
restores with its own: data pipelines and augmentations draw from them.

Both Mersenne Twister states (624 words each) are kept as bytes: plain data for any payload
format, and one object to write instead of more than a thousand integers.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_WORDS = np.dtype("<u4")  # the generators' 32-bit words, in a fixed byte order


def _to_bytes(words: Sequence[int] | np.ndarray[Any, Any]) -> bytes:
    return np.asarray(words, dtype=_WORDS).tobytes()


def _to_words(saved: bytes | Sequence[int]) -> np.ndarray[Any, Any]:
    """Words from bytes, or from the list of integers older checkpoints hold."""
    if isinstance(saved, (bytes, bytearray)):
        return np.frombuffer(saved, dtype=_WORDS)
    return np.asarray(saved, dtype=np.uint32)


def python_numpy_random_state() -> dict[str, Any]:
    """Python's and NumPy's global generators, as bytes and integers (nothing to unpickle)."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {
        "key": _to_bytes(numpy_state["state"]["key"]), "pos": int(numpy_state["state"]["pos"])
    }
    return {"python": [version, _to_bytes(internal), gauss], "numpy": numpy_state}


def set_python_numpy_random_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`python_numpy_random_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(_to_words(internal).tolist()), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        "key": _to_words(numpy_state["state"]["key"]).astype(np.uint32),
        "pos": numpy_state["state"]["pos"],
    }
    np.random.set_state(numpy_state)
