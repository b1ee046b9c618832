"""The demo behind ``hookline train``: a small MLP classifying scikit-learn's bundled digits,
in PyTorch.  The data, its split and the shared settings are in :mod:`hookline.backends.digits`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hookline.backends.digits import DigitsSettings
from hookline.backends.torch.task import PRECISIONS, TorchTask, accuracy, select_device
from hookline.settings import Options, Settings, SettingsError


def build_mlp(n_features: int, hidden: int, n_classes: int) -> nn.Sequential:
    """Two hidden layers with ReLU."""
    return nn.Sequential(
        nn.Linear(n_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )


def mlp_shape(state: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """``(n_features, hidden, n_classes)`` read from an MLP's saved weights."""
    first, last = state["0.weight"], state["4.weight"]
    return int(first.shape[1]), int(first.shape[0]), int(last.shape[0])


def classify(outputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predicted class and its softmax probability for each row."""
    confidence, label = outputs.float().softmax(dim=1).max(dim=1)
    return {"class": label, "confidence": confidence}


class DigitsRecipe(DigitsSettings):
    """The demo recipe: an MLP classifier on ``data`` (the digits by default); see
    :mod:`hookline.recipe`.  Adds ``device`` and ``precision`` to the shared settings."""

    def hookline_add_options(self, options: Options) -> None:
        super().hookline_add_options(options)
        add = options.add
        add("device", "auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...", owner="demo")
        add("precision", "32", help="32, bf16-mixed, or 16-mixed (CUDA)", owner="demo")

    def hookline_configure(self, settings: Settings) -> None:
        """Refuse values the demo cannot train with, before anything is built."""
        super().hookline_configure(settings)
        device = select_device(settings["device"])
        if settings["precision"] not in PRECISIONS:
            raise SettingsError(
                f"setting 'precision' must be one of {', '.join(PRECISIONS)}, "
                f"got {settings['precision']!r}"
            )
        if settings["precision"] == "16-mixed" and device.type != "cuda":
            raise SettingsError(
                "setting 'precision': 16-mixed needs a CUDA device; use bf16-mixed on CPU"
            )

    def task(self, settings: Settings) -> TorchTask:
        """An untrained MLP sized for the features and classes of ``data``."""
        n_features, n_classes = self.shape(settings)
        return self._task(settings, n_features, settings["hidden"], n_classes)

    def task_from_weights(self, settings: Settings, state: Mapping[str, Any]) -> TorchTask:
        """A task holding the saved model ``state`` (its shape is read from the weights)."""
        n_features, hidden, n_classes = mlp_shape(state["model"])
        self.check_shape(settings, n_features, n_classes)
        task = self._task(settings, n_features, hidden, n_classes)
        task.model.load_state_dict(state["model"])
        return task

    def _task(self, settings: Settings, n_features: int, hidden: int, n_classes: int) -> TorchTask:
        torch.manual_seed(settings["seed"])
        model = build_mlp(n_features, hidden, n_classes)
        lr, decay = settings["lr"], settings["weight_decay"]
        return TorchTask(
            model,
            nn.functional.cross_entropy,
            lambda parameters: torch.optim.AdamW(parameters, lr=lr, weight_decay=decay),
            metrics={"accuracy": accuracy},
            device=settings["device"],
            precision=settings["precision"],
            accumulate_grad_batches=settings["accumulate"],
            grad_clip_norm=settings["clip"] or None,
            postprocess=classify,
            example_input=torch.zeros(2, n_features),
        )

    def data(self, settings: Settings) -> tuple[DataLoader[Any], DataLoader[Any]]:
        """Training and validation loaders over a seeded split of ``data``."""
        (x_train, y_train), (x_val, y_val) = self.split_arrays(settings)
        generator = torch.Generator().manual_seed(settings["seed"])
        train = DataLoader(
            TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
            batch_size=settings["batch"], shuffle=True, generator=generator,
        )
        val = DataLoader(
            TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val)), batch_size=256
        )
        return train, val

    def predict_inputs(self, settings: Settings, source: str) -> DataLoader[Any]:
        """Input batches from ``source`` (see :meth:`DigitsSettings.predict_arrays`)."""
        x = self.predict_arrays(settings, source)
        return DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=256)
