"""The smallest complete :class:`~hookline.engine.task.Task`, in pure Python: linear regression
trained by gradient descent on the mean squared error.

It needs no framework at all, which makes it the task for tests of the engine and of
framework-free plugins (checkpoints, early stopping, learning-rate schedules), also in a
process where no framework can be imported.  Checkpoint payloads are JSON: floats round-trip
exactly, so a resumed run ends bit for bit where an uninterrupted one does.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from hookline.engine.task import Stage
from hookline.errors import CheckpointError

Rows = Sequence[Sequence[float]]
Batch = tuple[Rows, Sequence[float]]


def make_batches(x: Rows, y: Sequence[float], batch_size: int) -> list[Batch]:
    """Split rows ``x`` and targets ``y`` into ``(x, y)`` batches of at most ``batch_size``."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


class ShuffledBatches:
    """Batches of ``(x, y)`` in a new order every epoch, drawn from Python's global generator
    (which the task's random state holds, so a resumed epoch draws the same order)."""

    def __init__(self, x: Rows, y: Sequence[float], batch_size: int) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = list(range(len(self.x)))
        random.shuffle(order)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            yield [self.x[i] for i in rows], [self.y[i] for i in rows]


def _dot(row: Sequence[float], weight: Sequence[float]) -> float:
    return sum(value * w for value, w in zip(row, weight, strict=True))


class LinearRegressionTask:
    """``y = x @ weight + bias`` fitted by (mini-batch) gradient descent.

    :param n_features: the number of input columns.
    :param lr: the learning rate (one parameter group).
    :param seed: seeds the initial weights.
    :param accumulate_grad_batches: optimizer steps happen every this many batches.
    """

    export_formats = ("json",)
    checkpoint_format = "json"
    rank = 0
    world_size = 1

    def __init__(
        self, n_features: int, lr: float = 0.1, seed: int = 0, accumulate_grad_batches: int = 1
    ) -> None:
        generator = random.Random(seed)
        self.weight = [generator.gauss(0.0, 0.01) for _ in range(n_features)]
        self.bias = 0.0
        self.lr = lr
        self.accumulate_grad_batches = accumulate_grad_batches
        self.stage: Stage | None = None
        self.training = True
        self._grad_weight = [0.0] * n_features
        self._grad_bias = 0.0
        self._last: tuple[Rows, list[float]] | None = None

    # -- the loop ------------------------------------------------------------------------------

    def setup(self, stage: Stage) -> None:
        self.stage = stage

    def teardown(self) -> None:
        self.stage = None

    def abort(self) -> None:
        self.stage = None

    def shard(self, data: Iterable[Any], epoch: int | None) -> Iterable[Any]:
        return data

    def weighted_sum(self, values: Sequence[Any], weights: Sequence[int]) -> float:
        return sum(float(value) * weight for value, weight in zip(values, weights, strict=True))

    def reduce_sum(self, value: Any) -> Any:
        return value

    def train_mode(self, enabled: bool) -> None:
        self.training = enabled

    def _errors(self, batch: Batch) -> list[float]:
        x, y = batch
        return [
            _dot(row, self.weight) + self.bias - target for row, target in zip(x, y, strict=True)
        ]

    def training_step(self, batch: Batch) -> float:
        errors = self._errors(batch)
        self._last = (batch[0], errors)
        return sum(error * error for error in errors) / len(errors)

    def backward(self, loss: Any) -> None:
        if self._last is None:
            raise RuntimeError("backward() called before training_step()")
        x, errors = self._last
        scale = 2.0 / (len(errors) * self.accumulate_grad_batches)
        for j in range(len(self.weight)):
            column = (row[j] * error for row, error in zip(x, errors, strict=True))
            self._grad_weight[j] += scale * sum(column)
        self._grad_bias += scale * sum(errors)

    def unscale_gradients(self) -> None:
        return None  # no loss scaling: the gradients are final as they are

    def optimizer_step(self) -> None:
        self.weight = [w - self.lr * g for w, g in zip(self.weight, self._grad_weight, strict=True)]
        self.bias -= self.lr * self._grad_bias

    def zero_grad(self) -> None:
        self._grad_weight = [0.0] * len(self.weight)
        self._grad_bias = 0.0

    def validation_step(self, batch: Batch) -> dict[str, float]:
        errors = self._errors(batch)
        return {
            "loss": sum(error * error for error in errors) / len(errors),
            "mae": sum(abs(error) for error in errors) / len(errors),
        }

    def predict_step(self, batch: Batch | Rows) -> list[float]:
        rows = batch[0] if isinstance(batch, tuple) else batch
        return [_dot(row, self.weight) + self.bias for row in rows]

    def batch_size(self, batch: Batch | Rows) -> int:
        return len(batch[0]) if isinstance(batch, tuple) else len(batch)

    def detach(self, value: Any) -> Any:
        return value

    def to_float(self, value: Any) -> float:
        return float(value)

    # -- what plugins ask for ------------------------------------------------------------------

    def learning_rates(self) -> list[float]:
        return [self.lr]

    def set_learning_rates(self, rates: Sequence[float]) -> None:
        (self.lr,) = rates

    def random_state(self, data: Iterable[Any]) -> dict[str, Any]:
        return {"python": random.getstate()}

    def set_random_state(self, state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))

    def save_checkpoint(self, checkpoint: Mapping[str, Any]) -> bytes:
        return json.dumps(checkpoint).encode()

    def write_checkpoint(self, checkpoint: Mapping[str, Any], file: IO[bytes]) -> None:
        file.write(self.save_checkpoint(checkpoint))

    def host_copy(self, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        """A deep copy: the values are Python's own, already on the host."""
        return copy.deepcopy(dict(checkpoint))

    def load_checkpoint(self, data: bytes, source: str) -> dict[str, Any]:
        try:
            loaded = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            raise CheckpointError(f"checkpoint {source!r} is truncated or corrupt") from None
        if not isinstance(loaded, dict):
            raise CheckpointError(f"checkpoint {source!r} holds no hookline checkpoint")
        return loaded

    def parameters(self) -> dict[str, Any]:
        return {"weight": list(self.weight), "bias": self.bias}

    def gradients(self) -> dict[str, Any]:
        return {"weight": list(self._grad_weight), "bias": self._grad_bias}

    def gradient_norm(self) -> float:
        return math.sqrt(sum(g * g for g in self._grad_weight) + self._grad_bias**2)

    def state_dict(self) -> dict[str, Any]:
        return {"weight": list(self.weight), "bias": self.bias, "lr": self.lr}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        weight = [float(value) for value in state["weight"]]
        if len(weight) != len(self.weight):
            raise ValueError(f"weight has {len(weight)} values, expected {len(self.weight)}")
        self.weight, self.bias = weight, float(state["bias"])
        self.lr = float(state.get("lr", self.lr))

    def export(self, format: str, path: Path) -> Path:
        if format != "json":
            raise ValueError(f"unknown export format {format!r}; available: json")
        target = path if path.suffix == ".json" else path.with_suffix(".json")
        target.write_text(json.dumps({"weight": self.weight, "bias": self.bias}))
        return target
