"""The JAX side of the digits demo: its Flax NNX MLP, its task and its batches (imported by
:class:`hookline.backends.jax.demo.DigitsRecipe` when it builds them, so that declaring the
recipe's settings imports no JAX)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hookline.backends.arrays import ArrayBatches
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


def make_task(settings: Settings, n_features: int, hidden: int, n_classes: int) -> JaxTask:
    """The demo's task: the MLP, cross-entropy, Optax's AdamW (learning rate injected),
    accuracy, the settings' accumulation and clipping."""
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


def batches(
    settings: Settings, train: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    val: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> tuple[ArrayBatches, ArrayBatches]:
    """Training batches reshuffled each epoch, and validation batches (labels as int32, JAX's
    default integer)."""
    (x_train, y_train), (x_val, y_val) = train, val
    train_batches = ArrayBatches(
        x_train, y_train.astype(np.int32), settings["batch"], shuffle=True,
        seed=settings["seed"],
    )
    return train_batches, ArrayBatches(x_val, y_val.astype(np.int32), 256)
