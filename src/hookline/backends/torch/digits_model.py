"""The PyTorch side of the digits demo: its MLP, its task and its loaders (imported by
:class:`hookline.backends.torch.demo.DigitsRecipe` when it builds them, so that declaring the
recipe's settings imports no torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hookline.backends.torch.task import PRECISIONS, TorchTask, accuracy, select_device
from hookline.settings import Settings, SettingsError


def build_mlp(n_features: int, hidden: int, n_classes: int) -> nn.Sequential:
    """Two hidden layers with ReLU."""
    return nn.Sequential(
        nn.Linear(n_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )


def mlp_shape(state: Mapping[str, torch.Tensor]) -> tuple[int, int, int]:
    """``(n_features, hidden, n_classes)`` read from an MLP's saved weights."""
    first, last = state["0.weight"], state["4.weight"]
    return int(first.shape[1]), int(first.shape[0]), int(last.shape[0])


def classify(outputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predicted class and its softmax probability for each row."""
    confidence, label = outputs.float().softmax(dim=1).max(dim=1)
    return {"class": label, "confidence": confidence}


def check_device(settings: Settings) -> None:
    """Refuse a device or precision the demo cannot train with."""
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


def make_task(settings: Settings, n_features: int, hidden: int, n_classes: int) -> TorchTask:
    """The demo's task: the MLP, cross-entropy, AdamW, accuracy, the settings' device,
    precision, accumulation and clipping."""
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
        strategy=settings.get("strategy", "auto"),
    )


def loaders(
    settings: Settings, train: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    val: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """A shuffled training loader (seeded) and a validation loader."""
    generator = torch.Generator().manual_seed(settings["seed"])
    train_loader = DataLoader(
        TensorDataset(torch.from_numpy(train[0]), torch.from_numpy(train[1])),
        batch_size=settings["batch"], shuffle=True, generator=generator,
    )
    val_loader = DataLoader(
        TensorDataset(torch.from_numpy(val[0]), torch.from_numpy(val[1])), batch_size=256
    )
    return train_loader, val_loader


def input_loader(x: np.ndarray[Any, Any]) -> DataLoader[Any]:
    """Batches of inputs alone, to predict."""
    return DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=256)
