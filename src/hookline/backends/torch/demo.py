"""The demo behind ``hookline train``: a small MLP classifying scikit-learn's bundled digits,
in PyTorch.  The data, its split and the shared settings are in :mod:`hookline.backends.digits`;
the model, task and loaders in :mod:`hookline.backends.torch.digits_model`, imported when the
recipe builds them: declaring the settings (``hookline settings``) imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hookline.backends.digits import DigitsSettings
from hookline.settings import Options, Settings

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from hookline.backends.torch.task import TorchTask


class DigitsRecipe(DigitsSettings):
    """The demo recipe: an MLP classifier on ``data`` (the digits by default); see
    :mod:`hookline.recipe`.  Adds ``device``, ``precision`` and ``strategy`` to the shared
    settings."""

    def hookline_add_options(self, options: Options) -> None:
        super().hookline_add_options(options)
        add = options.add
        add("device", "auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...", owner="demo")
        add("precision", "32", help="32, bf16-mixed, or 16-mixed (CUDA)", owner="demo")
        add("strategy", "auto", help="under torchrun: ddp (auto) or fsdp (sharded; batch is "
            "the global batch)", owner="demo", choices=("auto", "ddp", "fsdp"))

    def hookline_configure(self, settings: Settings) -> None:
        """Refuse values the demo cannot train with, before anything is built."""
        from hookline.backends.torch.digits_model import check_device

        super().hookline_configure(settings)
        check_device(settings)

    def task(self, settings: Settings) -> TorchTask:
        """An untrained MLP sized for the features and classes of ``data``."""
        from hookline.backends.torch.digits_model import make_task

        n_features, n_classes = self.shape(settings)
        return make_task(settings, n_features, settings["hidden"], n_classes)

    def task_from_weights(self, settings: Settings, state: Mapping[str, Any]) -> TorchTask:
        """A task holding the saved model ``state`` (its shape is read from the weights)."""
        from hookline.backends.torch.digits_model import make_task, mlp_shape

        n_features, hidden, n_classes = mlp_shape(state["model"])
        self.check_shape(settings, n_features, n_classes)
        task = make_task(settings, n_features, hidden, n_classes)
        task.model.load_state_dict(state["model"])
        return task

    def data(self, settings: Settings) -> tuple[DataLoader[Any], DataLoader[Any]]:
        """Training and validation loaders over a seeded split of ``data``."""
        from hookline.backends.torch.digits_model import loaders

        train, val = self.split_arrays(settings)
        return loaders(settings, train, val)

    def predict_inputs(self, settings: Settings, source: str) -> DataLoader[Any]:
        """Input batches from ``source`` (see :meth:`DigitsSettings.predict_arrays`)."""
        from hookline.backends.torch.digits_model import input_loader

        return input_loader(self.predict_arrays(settings, source))
