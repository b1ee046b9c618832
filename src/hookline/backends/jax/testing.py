"""The plugin-author kit's tiny task on JAX (see :mod:`hookline.testing.backends`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import optax
from flax import nnx
from jax._src.array import ArrayImpl  # the class of every concrete jax.Array

from hookline.backends.arrays import ArrayBatches
from hookline.backends.jax.task import JaxTask, accuracy, cross_entropy
from hookline.backends.tiny import TinyBackend


class JaxBackend(TinyBackend):
    """The tiny classifier on JAX: a Flax NNX MLP in a :class:`JaxTask`, Optax optimizers."""

    name = "jax"
    #: The relative precision of a learning rate the task reports: the rate an optimizer was
    #: built with is a float32 on the device (rates set later are kept exactly).
    lr_precision = 1e-7

    def make_task(
        self, *, features: int = 4, hidden: int = 16, dropout: float = 0.0,
        optimizer: str = "sgd", lr: float = 0.1, **options: Any,
    ) -> Any:
        class MLP(nnx.Module):
            def __init__(self, rngs: nnx.Rngs) -> None:
                self.hidden = nnx.Linear(features, hidden, rngs=rngs)
                self.dropout = nnx.Dropout(dropout, rngs=rngs)
                self.output = nnx.Linear(hidden, 2, rngs=rngs)

            def __call__(self, inputs: Any) -> Any:
                return self.output(self.dropout(nnx.relu(self.hidden(inputs))))

        make = {"sgd": optax.sgd, "adamw": optax.adamw}[optimizer]
        return JaxTask(
            MLP(nnx.Rngs(0)), cross_entropy, optax.inject_hyperparams(make)(learning_rate=lr),
            metrics={"accuracy": accuracy}, **options,
        )

    def split(self, inputs: np.ndarray, labels: np.ndarray, size: int) -> list[tuple[Any, Any]]:
        """The arrays as a list of batches, in order."""
        return [(inputs[i : i + size], labels[i : i + size]) for i in range(0, len(inputs), size)]

    def shuffled(self, inputs: np.ndarray, labels: np.ndarray, size: int, seed: int) -> Any:
        return ArrayBatches(inputs, labels, size, shuffle=True, seed=seed)

    def weights(self, task: Any) -> dict[str, np.ndarray]:
        return {name: np.asarray(value) for name, value in task.parameters().items()}

    def host_reads(self) -> tuple[type, tuple[str, ...]]:
        """The array class and its methods through which a value reaches the host (what a
        framework-free plugin can call: Python's conversions and formatting)."""
        methods = ("item", "tolist", "__array__", "__float__", "__int__", "__bool__",
                   "__index__", "__format__")
        return ArrayImpl, methods

    def add_ballast(self, checkpoint: dict[str, Any], megabytes: int) -> None:
        checkpoint["ballast"] = np.ones(megabytes * 250_000, np.float32)
