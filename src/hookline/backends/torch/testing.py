"""The plugin-author kit's tiny task on torch (see :mod:`hookline.testing.backends`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hookline.backends.tiny import TinyBackend
from hookline.backends.torch.task import TorchTask, accuracy


class TorchBackend(TinyBackend):
    """The tiny classifier on torch: an MLP in a :class:`TorchTask` on the CPU."""

    name = "torch"
    #: The relative precision of a learning rate the task reports (float64 in torch).
    lr_precision = 1e-12

    def make_task(
        self, *, features: int = 4, hidden: int = 16, dropout: float = 0.0,
        optimizer: str = "sgd", lr: float = 0.1, **options: Any,
    ) -> Any:
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
        return torch.from_numpy(inputs), torch.from_numpy(labels.astype(np.int64))

    def split(self, inputs: np.ndarray, labels: np.ndarray, size: int) -> list[tuple[Any, Any]]:
        """The arrays as a list of batches, in order."""
        x, y = self.tensors(inputs, labels)
        return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]

    def shuffled(self, inputs: np.ndarray, labels: np.ndarray, size: int, seed: int) -> Any:
        from torch.utils.data import DataLoader, TensorDataset

        return DataLoader(
            TensorDataset(*self.tensors(inputs, labels)), batch_size=size, shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )

    def weights(self, task: Any) -> dict[str, np.ndarray]:
        return {name: value.numpy().copy() for name, value in task.model.state_dict().items()}

    def host_reads(self) -> tuple[type, tuple[str, ...]]:
        """The array class and its methods through which a value reaches the host."""
        methods = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__",
                   "__index__")
        return torch.Tensor, methods

    def add_ballast(self, checkpoint: dict[str, Any], megabytes: int) -> None:
        checkpoint["ballast"] = torch.ones(megabytes * 250_000)
