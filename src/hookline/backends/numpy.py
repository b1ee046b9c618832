"""A minimal NumPy backend: linear regression trained by gradient descent on mean squared error.

It proves the engine without torch, and shows the smallest complete
:class:`~hookline.backends.base.Task`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hookline.backends.base import Stage

Batch = tuple[NDArray[np.float64], NDArray[np.float64]]


def python_numpy_random_state() -> dict[str, Any]:
    """Python's and NumPy's global generators, as ints and lists (no arrays to unpickle)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {
        "key": numpy_state["state"]["key"].tolist(), "pos": int(numpy_state["state"]["pos"])
    }
    return {"python": random.getstate(), "numpy": numpy_state}


def set_python_numpy_random_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`python_numpy_random_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
        "pos": numpy_state["state"]["pos"],
    }
    np.random.set_state(numpy_state)


def make_batches(
    x: NDArray[np.float64], y: NDArray[np.float64], batch_size: int
) -> list[Batch]:
    """Split ``x`` and ``y`` into ``(x, y)`` batches of at most ``batch_size`` rows."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


class LinearRegressionTask:
    """``y = x @ weight + bias`` fitted by (mini-batch) gradient descent.

    :param n_features: the number of input columns.
    :param lr: the learning rate.
    :param seed: seeds the initial weights.
    :param accumulate_grad_batches: optimizer steps happen every this many batches.
    """

    export_formats = ("npz",)
    rank = 0
    world_size = 1

    def __init__(
        self, n_features: int, lr: float = 0.1, seed: int = 0, accumulate_grad_batches: int = 1
    ) -> None:
        rng = np.random.default_rng(seed)
        self.weight: NDArray[np.float64] = rng.normal(0.0, 0.01, n_features)
        self.bias = 0.0
        self.lr = lr
        self.accumulate_grad_batches = accumulate_grad_batches
        self.stage: Stage | None = None
        self.training = True
        self._grad_weight = np.zeros(n_features)
        self._grad_bias = 0.0
        self._last: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    def setup(self, stage: Stage) -> None:
        self.stage = stage

    def teardown(self) -> None:
        self.stage = None

    def shard(self, data: Iterable[Any], epoch: int | None) -> Iterable[Any]:
        return data

    def weighted_sum(self, values: Sequence[Any], weights: Sequence[int]) -> float:
        return float(np.dot(np.asarray(values, dtype=np.float64), weights))

    def reduce_sum(self, value: Any) -> Any:
        return value

    def any_rank(self, flag: bool) -> bool:
        return flag

    def train_mode(self, enabled: bool) -> None:
        self.training = enabled

    def _inputs(self, batch: Batch | NDArray[np.float64]) -> NDArray[np.float64]:
        return batch[0] if isinstance(batch, tuple) else batch

    def training_step(self, batch: Batch) -> float:
        x, y = batch
        error = x @ self.weight + self.bias - y
        self._last = (x, error)
        return float(np.mean(error**2))

    def backward(self, loss: Any) -> None:
        if self._last is None:
            raise RuntimeError("backward() called before training_step()")
        x, error = self._last
        scale = 2.0 / (len(error) * self.accumulate_grad_batches)
        self._grad_weight += scale * (x.T @ error)
        self._grad_bias += scale * float(error.sum())

    def optimizer_step(self) -> None:
        self.weight -= self.lr * self._grad_weight
        self.bias -= self.lr * self._grad_bias

    def zero_grad(self) -> None:
        self._grad_weight[:] = 0.0
        self._grad_bias = 0.0

    def validation_step(self, batch: Batch) -> dict[str, float]:
        x, y = batch
        error = x @ self.weight + self.bias - y
        return {"loss": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error)))}

    def predict_step(self, batch: Batch | NDArray[np.float64]) -> NDArray[np.float64]:
        result: NDArray[np.float64] = self._inputs(batch) @ self.weight + self.bias
        return result

    def batch_size(self, batch: Batch | Sequence[Any]) -> int:
        return len(self._inputs(batch))  # type: ignore[arg-type]

    def detach(self, value: Any) -> Any:
        return value

    def to_float(self, value: Any) -> float:
        return float(value)

    def random_state(self, data: Iterable[Any]) -> dict[str, Any]:
        return python_numpy_random_state()

    def set_random_state(self, state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
        set_python_numpy_random_state(state)

    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight.copy(), "bias": self.bias}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        weight = np.asarray(state["weight"], dtype=np.float64)
        if weight.shape != self.weight.shape:
            raise ValueError(f"weight has shape {weight.shape}, expected {self.weight.shape}")
        self.weight = weight.copy()
        self.bias = float(state["bias"])

    def export(self, format: str, path: Path) -> Path:
        if format != "npz":
            raise ValueError(f"unknown export format {format!r}; available: npz")
        target = path if path.suffix == ".npz" else path.with_suffix(".npz")
        np.savez(target, weight=self.weight, bias=np.float64(self.bias))
        return target
