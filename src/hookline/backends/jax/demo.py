"""The digits demo on JAX: ``hookline train recipe=digits-jax``.

The same data, split, settings and MLP shape as the PyTorch demo (see
:mod:`hookline.backends.digits`), as a Flax NNX module trained with Optax's AdamW; batches are
:class:`~hookline.backends.arrays.ArrayBatches`, so no torch is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hookline.backends.arrays import ArrayBatches
from hookline.backends.digits import DigitsSettings
from hookline.backends.jax.task import JaxTask, accuracy, cross_entropy
from hookline.settings import Settings


class MLP(nnx.Module):
    """Two hidden layers with ReLU, as the PyTorch demo's."""

    def __init__(self, n_features: int, hidden: int, n_classes: int, *, rngs: nnx.Rngs) -> None:
        self.hidden1 = nnx.Linear(n_features, hidden, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.output = nnx.Linear(hidden, n_classes, rngs=rngs)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        hidden = nnx.relu(self.hidden2(nnx.relu(self.hidden1(inputs))))
        return self.output(hidden)


def mlp_shape(params: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(n_features, hidden, n_classes)`` read from an MLP's saved parameters."""
    first, last = params["hidden1"]["kernel"], params["output"]["kernel"]
    return int(first.shape[0]), int(first.shape[1]), int(last.shape[1])


def classify(outputs: jax.Array) -> dict[str, jax.Array]:
    """Predicted class and its softmax probability for each row."""
    probabilities = jax.nn.softmax(outputs.astype(jnp.float32), axis=-1)
    return {"class": jnp.argmax(probabilities, axis=-1), "confidence": probabilities.max(axis=-1)}


class DigitsRecipe(DigitsSettings):
    """The demo recipe on JAX: an MLP classifier on ``data`` (the digits by default), on the
    default JAX device; see :mod:`hookline.recipe`."""

    def task(self, settings: Settings) -> JaxTask:
        """An untrained MLP sized for the features and classes of ``data``."""
        n_features, n_classes = self.shape(settings)
        return self._task(settings, n_features, settings["hidden"], n_classes)

    def task_from_weights(self, settings: Settings, state: Mapping[str, Any]) -> JaxTask:
        """A task holding the saved model ``state`` (its shape is read from the weights)."""
        n_features, hidden, n_classes = mlp_shape(state["model"]["params"])
        self.check_shape(settings, n_features, n_classes)
        task = self._task(settings, n_features, hidden, n_classes)
        task.load_model_state(state["model"])
        return task

    def _task(self, settings: Settings, n_features: int, hidden: int, n_classes: int) -> JaxTask:
        model = MLP(n_features, hidden, n_classes, rngs=nnx.Rngs(settings["seed"]))
        optimizer = optax.inject_hyperparams(optax.adamw)(
            learning_rate=settings["lr"], weight_decay=settings["weight_decay"]
        )
        return JaxTask(
            model,
            cross_entropy,
            optimizer,
            metrics={"accuracy": accuracy},
            accumulate_grad_batches=settings["accumulate"],
            grad_clip_norm=settings["clip"] or None,
            postprocess=classify,
            example_input=np.zeros((2, n_features), np.float32),
        )

    def data(self, settings: Settings) -> tuple[ArrayBatches, ArrayBatches]:
        """Training batches reshuffled each epoch, and validation batches, over a seeded split
        of ``data`` (labels as int32, JAX's default integer)."""
        (x_train, y_train), (x_val, y_val) = self.split_arrays(settings)
        train = ArrayBatches(
            x_train, y_train.astype(np.int32), settings["batch"], shuffle=True,
            seed=settings["seed"],
        )
        return train, ArrayBatches(x_val, y_val.astype(np.int32), 256)

    def predict_inputs(self, settings: Settings, source: str) -> ArrayBatches:
        """Input batches from ``source`` (see :meth:`DigitsSettings.predict_arrays`)."""
        return ArrayBatches(self.predict_arrays(settings, source), batch_size=256)
