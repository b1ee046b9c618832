"""The same small classifier and data on each backend, so that plugin tests run unchanged on
torch and on JAX (the ``backend`` fixture in conftest.py parametrizes them over both).

A backend builds a task (an MLP with optional dropout, plain SGD or AdamW), separable data as
a list of batches or a shuffled, resumable loader, and reads a task's weights and checkpoints
back as NumPy arrays and plain data.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

import hookline

NAMES = ("torch", "jax")


def blobs(rows: int, seed: int = 0, features: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Two separable classes in ``features`` dimensions (float32 inputs, int32 labels)."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, rows).astype(np.int32)
    inputs = generator.normal(size=(rows, features)).astype(np.float32) + labels[:, None] * 3.0
    return inputs.astype(np.float32), labels


def available(name: str) -> bool:
    """Whether the backend's framework is installed here."""
    modules = {"torch": ("torch",), "jax": ("jax", "flax", "optax")}[name]
    return all(importlib.util.find_spec(module) is not None for module in modules)


class TorchBackend:
    name = "torch"
    #: The relative precision of a learning rate the task reports (float64 in torch).
    lr_precision = 1e-12

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def make_task(
        self, *, features: int = 4, hidden: int = 16, dropout: float = 0.0,
        optimizer: str = "sgd", lr: float = 0.1, **options: Any,
    ) -> Any:
        from torch import nn

        from hookline.backends.torch import TorchTask, accuracy

        torch = self.torch
        torch.manual_seed(0)
        layers = [nn.Linear(features, hidden), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        model = nn.Sequential(*layers, nn.Linear(hidden, 2))
        make = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[optimizer]
        return TorchTask(
            model, nn.functional.cross_entropy, lambda parameters: make(parameters, lr=lr),
            metrics={"accuracy": accuracy}, device="cpu", **options,
        )

    def tensors(self, inputs: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
        return self.torch.from_numpy(inputs), self.torch.from_numpy(labels.astype(np.int64))

    def batches(self, rows: int = 256, size: int = 32, seed: int = 0) -> list[tuple[Any, Any]]:
        return self.split(*blobs(rows, seed), size=size)

    def split(self, inputs: np.ndarray, labels: np.ndarray, size: int) -> list[tuple[Any, Any]]:
        """The arrays as a list of batches, in order."""
        x, y = self.tensors(inputs, labels)
        return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]

    def shuffled(self, inputs: np.ndarray, labels: np.ndarray, size: int, seed: int) -> Any:
        from torch.utils.data import DataLoader, TensorDataset

        return DataLoader(
            TensorDataset(*self.tensors(inputs, labels)), batch_size=size, shuffle=True,
            generator=self.torch.Generator().manual_seed(seed),
        )

    def weights(self, task: Any) -> dict[str, np.ndarray]:
        return {name: value.numpy().copy() for name, value in task.model.state_dict().items()}

    def host_reads(self) -> tuple[type, tuple[str, ...]]:
        """The array class and its methods through which a value reaches the host."""
        methods = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__",
                   "__index__")
        return self.torch.Tensor, methods

    def add_ballast(self, checkpoint: dict[str, Any], megabytes: int) -> None:
        checkpoint["ballast"] = self.torch.ones(megabytes * 250_000)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        return hookline.load_checkpoint(path, self.make_task())


class JaxBackend:
    name = "jax"
    #: The relative precision of a learning rate the task reports: the rate an optimizer was
    #: built with is a float32 on the device (rates set later are kept exactly).
    lr_precision = 1e-7

    def make_task(
        self, *, features: int = 4, hidden: int = 16, dropout: float = 0.0,
        optimizer: str = "sgd", lr: float = 0.1, **options: Any,
    ) -> Any:
        import optax
        from flax import nnx

        from hookline.backends.jax import JaxTask, accuracy, cross_entropy

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

    def batches(self, rows: int = 256, size: int = 32, seed: int = 0) -> list[tuple[Any, Any]]:
        return self.split(*blobs(rows, seed), size=size)

    def split(self, inputs: np.ndarray, labels: np.ndarray, size: int) -> list[tuple[Any, Any]]:
        """The arrays as a list of batches, in order."""
        return [(inputs[i : i + size], labels[i : i + size]) for i in range(0, len(inputs), size)]

    def shuffled(self, inputs: np.ndarray, labels: np.ndarray, size: int, seed: int) -> Any:
        from hookline.backends.arrays import ArrayBatches

        return ArrayBatches(inputs, labels, size, shuffle=True, seed=seed)

    def weights(self, task: Any) -> dict[str, np.ndarray]:
        import jax

        flat = jax.tree_util.tree_flatten_with_path(task.state_dict()["model"]["params"])[0]
        return {jax.tree_util.keystr(path): np.asarray(value) for path, value in flat}

    def host_reads(self) -> tuple[type, tuple[str, ...]]:
        """The array class and its methods through which a value reaches the host (what a
        framework-free plugin can call: Python's conversions and formatting)."""
        from jax._src.array import ArrayImpl  # the class of every concrete jax.Array

        methods = ("item", "tolist", "__array__", "__float__", "__int__", "__bool__",
                   "__index__", "__format__")
        return ArrayImpl, methods

    def add_ballast(self, checkpoint: dict[str, Any], megabytes: int) -> None:
        checkpoint["ballast"] = np.ones(megabytes * 250_000, np.float32)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        return hookline.load_checkpoint(path, self.make_task())


def backend(name: str) -> TorchBackend | JaxBackend:
    """The backend called ``name``."""
    return TorchBackend() if name == "torch" else JaxBackend()
