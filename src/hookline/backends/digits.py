"""What the digits demos of every backend share: the data, its seeded split, and the settings
with their checks.  Each backend's ``demo`` module adds its model, task and batches.

No download: the 1,797 8x8 digit images ship inside scikit-learn.  ``data=`` may instead name
a ``.npz`` file (arrays ``x`` and ``y``) or a ``.csv`` file (features, then the label in the last
column).  A recipe is a plugin: it declares its settings, so that they are checked like every
other setting and recorded in the run's ``args.yaml`` and checkpoints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from hookline.errors import UserError
from hookline.manager import Callback
from hookline.settings import Options, Settings, SettingsError

if TYPE_CHECKING:  # NumPy is imported when data is read: declaring settings needs none
    import numpy as np
    from numpy.typing import NDArray

    Arrays = tuple[NDArray[np.float32], NDArray[np.int64]]


class DataError(UserError, ValueError):
    """The data setting names something that cannot be read."""



def load_arrays(data: str) -> Arrays:
    """Features (float32) and labels (int64) from ``"digits"``, a ``.npz`` or a ``.csv`` file."""
    import numpy as np

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
    import numpy as np

    x, y = arrays
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, round(len(x) * val_split))
    train, val = order[:cut], order[cut:]
    return (x[train], y[train]), (x[val], y[val])


class DigitsSettings(Callback):
    """The settings every digits demo takes, their checks, and the data they name.

    A backend's recipe subclasses it, adds its own settings (calling ``super()``) and builds
    the model, the task and the batches from :meth:`split_arrays` and :meth:`predict_arrays`.
    """

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

    def arrays(self, data: str) -> Arrays:
        """The arrays ``data`` names (read once per recipe)."""
        if data not in self._arrays:
            self._arrays[data] = load_arrays(data)
        return self._arrays[data]

    def shape(self, settings: Settings) -> tuple[int, int]:
        """``(n_features, n_classes)`` of the data."""
        x, y = self.arrays(settings["data"])
        return x.shape[1], int(y.max()) + 1

    def check_shape(self, settings: Settings, n_features: int, n_classes: int) -> None:
        """Refuse a saved model whose input or output size does not fit the data."""
        expected = self.shape(settings)
        if (n_features, n_classes) != expected:
            raise ValueError(
                f"its model takes {n_features} features and {n_classes} classes; data "
                f"{settings['data']!r} has {expected[0]} and {expected[1]}"
            )

    def split_arrays(self, settings: Settings) -> tuple[Arrays, Arrays]:
        """The seeded training and validation split of ``data``."""
        return split(self.arrays(settings["data"]), settings["val_split"], settings["seed"])

    def predict_arrays(self, settings: Settings, source: str) -> NDArray[np.float32]:
        """Inputs to predict from ``source``: ``val`` (the validation split) or a .npz/.csv
        file with the same layout as ``data``."""
        if source == "val":
            return self.split_arrays(settings)[1][0]
        x, _ = load_arrays(source)
        n_features = self.shape(settings)[0]
        if x.shape[1] != n_features:
            raise DataError(
                f"source {source!r} has {x.shape[1]} feature columns; the model takes "
                f"{n_features} (a .csv's last column is the label)"
            )
        return x
