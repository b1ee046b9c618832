"""The plugin-author kit's tiny classifier: its data, and what each backend's version shares.

Each backend has a :class:`TinyBackend` (``hookline.backends.<name>.testing``) that builds the
same small task (an MLP with optional dropout, plain SGD or AdamW), turns the same separable
data (:func:`blobs`) into that framework's batches, and reads a task's weights back as NumPy
arrays, so that a plugin test runs unchanged on every backend
(:mod:`hookline.testing.backends` picks them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def blobs(rows: int, seed: int = 0, features: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Two separable classes in ``features`` dimensions (float32 inputs, int32 labels)."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, rows).astype(np.int32)
    inputs = generator.normal(size=(rows, features)).astype(np.float32) + labels[:, None] * 3.0
    return inputs.astype(np.float32), labels


class TinyBackend:
    """The tiny classifier on one backend.

    :ivar name: the backend's name (``torch``, ``jax``).
    :ivar lr_precision: the relative precision of a learning rate the task reports.
    """

    name = ""
    lr_precision = 0.0

    def make_task(self, **options: Any) -> Any:
        """A new task: ``features`` (4), ``hidden`` (16), ``dropout`` (0), ``optimizer``
        (``sgd`` or ``adamw``), ``lr`` (0.1); other options go to the task."""
        raise NotImplementedError

    def split(self, inputs: np.ndarray, labels: np.ndarray, size: int) -> list[tuple[Any, Any]]:
        """The arrays as a list of ``(inputs, targets)`` batches of this framework, in order."""
        raise NotImplementedError

    def shuffled(self, inputs: np.ndarray, labels: np.ndarray, size: int, seed: int) -> Any:
        """The arrays as batches reshuffled every epoch, resumable mid-epoch."""
        raise NotImplementedError

    def weights(self, task: Any) -> dict[str, np.ndarray]:
        """The task's parameters as NumPy arrays, by name."""
        raise NotImplementedError

    def host_reads(self) -> tuple[type, tuple[str, ...]]:
        """The array class and its methods through which a value reaches the host."""
        raise NotImplementedError

    def add_ballast(self, checkpoint: dict[str, Any], megabytes: int) -> None:
        """Make ``checkpoint`` about ``megabytes`` larger (to test slow writes)."""
        raise NotImplementedError

    def batches(self, rows: int = 256, size: int = 32, seed: int = 0) -> list[tuple[Any, Any]]:
        """``rows`` rows of :func:`blobs` as batches of ``size``."""
        return self.split(*blobs(rows, seed), size=size)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """A checkpoint file written for this backend's task, read back."""
        from hookline.engine import load_checkpoint

        return load_checkpoint(path, self.make_task())
