"""A recipe other than the demo: linear regression on synthetic data, for the CLI tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hookline import Callback
from hookline.backends.torch import TorchTask


def mean_absolute_error(outputs, targets):
    return (outputs - targets).abs().mean()


class LinearRecipe(Callback):
    def hookline_add_options(self, options):
        options.add("features", 4, help="input columns", owner="linear")
        options.add("lr", 0.1, help="SGD learning rate", owner="linear")

    def _arrays(self, settings):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(256, settings["features"], generator=generator)
        return x, x.sum(dim=1, keepdim=True) + 0.5

    def data(self, settings):
        x, y = self._arrays(settings)
        return DataLoader(TensorDataset(x[:192], y[:192]), batch_size=16), DataLoader(
            TensorDataset(x[192:], y[192:]), batch_size=64
        )

    def task(self, settings):
        torch.manual_seed(0)
        model = nn.Linear(settings["features"], 1)
        lr = settings["lr"]
        return TorchTask(
            model, nn.functional.mse_loss, lambda p: torch.optim.SGD(p, lr=lr),
            metrics={"mae": mean_absolute_error}, device="cpu",
            example_input=torch.zeros(2, settings["features"]),
        )

    def task_from_weights(self, settings, state):
        task = self.task(settings)
        task.model.load_state_dict(state["model"])
        return task

    def predict_inputs(self, settings, source):
        return DataLoader(TensorDataset(self._arrays(settings)[0]), batch_size=64)
