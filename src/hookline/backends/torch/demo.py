"""The demo behind ``hookline train``: a small MLP classifying scikit-learn's bundled digits.

No download: the 1,797 8x8 digit images ship inside scikit-learn.  ``data=`` may instead name
a ``.npz`` file (arrays ``x`` and ``y``) or a ``.csv`` file (features, then the label in the last
column).  The recipe is a plugin: it declares its settings, so that they are checked like
every other setting and recorded in the run's ``args.yaml`` and checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hookline.backends.torch.task import PRECISIONS, TorchTask, accuracy, select_device
from hookline.errors import UserError
from hookline.manager import Callback
from hookline.settings import Options, Settings, SettingsError


class DataError(UserError, ValueError):
    """The data setting names something that cannot be read."""


Arrays = tuple[NDArray[np.float32], NDArray[np.int64]]


def load_arrays(data: str) -> Arrays:
    """Features (float32) and labels (int64) from ``"digits"``, a ``.npz`` or a ``.csv`` file."""
    if data == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
    path = Path(data)
    if not path.exists():
        raise DataError(f"data path {data!r} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path) as arrays:
                return arrays["x"].astype(np.float32), arrays["y"].astype(np.int64)
        if path.suffix == ".csv":
            table = np.loadtxt(path, delimiter=",", ndmin=2)
            return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"cannot read data file {data!r}: {error}") from None
    raise DataError(f"data file {data!r} must be .npz (arrays x, y) or .csv")


def split(arrays: Arrays, val_split: float, seed: int) -> tuple[Arrays, Arrays]:
    """A seeded random split into training and validation parts."""
    x, y = arrays
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, round(len(x) * val_split))
    train, val = order[:cut], order[cut:]
    return (x[train], y[train]), (x[val], y[val])


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


class DigitsRecipe(Callback):
    """The demo recipe: an MLP classifier on ``data`` (the digits by default); see
    :mod:`hookline.recipe`.  Its settings are declared through ``hookline_add_options``."""

    def __init__(self) -> None:
        self._arrays: dict[str, Arrays] = {}

    def hookline_add_options(self, options: Options) -> None:
        add = options.add
        add("data", "digits", help="'digits', or a .npz (x, y) or .csv file", owner="demo")
        add("batch", 32, help="training batch size", owner="demo")
        add("lr", 3e-3, help="AdamW learning rate", owner="demo")
        add("weight_decay", 1e-4, help="AdamW weight decay", owner="demo")
        add("hidden", 128, help="width of the hidden layers", owner="demo")
        add("seed", 0, help="seed of weights, split and shuffling", owner="demo")
        add("val_split", 0.2, help="share of the data held out for validation", owner="demo")
        add("device", "auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...", owner="demo")
        add("precision", "32", help="32, bf16-mixed, or 16-mixed (CUDA)", owner="demo")
        add("accumulate", 1, help="batches per optimizer step", owner="demo")
        add("clip", 0.0, help="gradient-norm clipping (0: off)", owner="demo")

    def hookline_configure(self, settings: Settings) -> None:
        """Refuse values the demo cannot train with, before anything is built."""
        finite = math.isfinite
        checks = (
            ("batch", settings["batch"] >= 1, "an integer >= 1"),
            ("hidden", settings["hidden"] >= 1, "an integer >= 1"),
            ("accumulate", settings["accumulate"] >= 1, "an integer >= 1"),
            ("lr", finite(settings["lr"]) and settings["lr"] > 0, "a finite number > 0"),
            ("weight_decay", finite(settings["weight_decay"]) and settings["weight_decay"] >= 0,
             "a finite number >= 0"),
            ("clip", finite(settings["clip"]) and settings["clip"] >= 0, "a finite number >= 0"),
            ("val_split", 0 < settings["val_split"] < 1, "a share strictly between 0 and 1"),
        )
        for name, valid, expected in checks:
            if not valid:
                raise SettingsError(f"setting {name!r} must be {expected}, got {settings[name]!r}")
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

    def _load(self, data: str) -> Arrays:
        if data not in self._arrays:
            self._arrays[data] = load_arrays(data)
        return self._arrays[data]

    def task(self, settings: Settings) -> TorchTask:
        """An untrained MLP sized for the features and classes of ``data``."""
        x, y = self._load(settings["data"])
        return self._task(settings, x.shape[1], settings["hidden"], int(y.max()) + 1)

    def task_from_weights(self, settings: Settings, state: Mapping[str, Any]) -> TorchTask:
        """A task holding the saved model ``state`` (its shape is read from the weights)."""
        n_features, hidden, n_classes = mlp_shape(state["model"])
        x, y = self._load(settings["data"])
        if (n_features, n_classes) != (x.shape[1], int(y.max()) + 1):
            raise ValueError(
                f"its model takes {n_features} features and {n_classes} classes; data "
                f"{settings['data']!r} has {x.shape[1]} and {int(y.max()) + 1}"
            )
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
        arrays = self._load(settings["data"])
        (x_train, y_train), (x_val, y_val) = split(arrays, settings["val_split"], settings["seed"])
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
        """Input batches from ``source``: ``val`` (the validation split) or a .npz/.csv file
        with the same layout as ``data``."""
        arrays = self._load(settings["data"])
        if source == "val":
            _, (x, _) = split(arrays, settings["val_split"], settings["seed"])
        else:
            x, _ = load_arrays(source)
            if x.shape[1] != arrays[0].shape[1]:
                raise DataError(
                    f"source {source!r} has {x.shape[1]} feature columns; the model takes "
                    f"{arrays[0].shape[1]} (a .csv's last column is the label)"
                )
        return DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=256)
