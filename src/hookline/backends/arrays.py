"""Batches from NumPy arrays, shared by every backend: no framework needed to feed a model.

:class:`ArrayBatches` cuts ``(inputs, targets)`` arrays into batches, reshuffled each epoch by a
generator seeded from ``(seed, epoch)``.  Its only state is the number of epochs drawn so far,
so a checkpoint stores one integer and a resumed epoch draws the same order again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


class ArrayBatches:
    """``(inputs, targets)`` batches (or ``(inputs,)`` without targets) of NumPy arrays.

    :param inputs: an array whose first axis is the sample.
    :param targets: an array with as many rows, or None (for prediction).
    :param batch_size: samples per batch; the last batch may be smaller unless ``drop_last``.
    :param shuffle: draw a new order every epoch (a permutation seeded by ``(seed, epoch)``).
    :param seed: the seed of the shuffle.
    :param drop_last: leave out the last, smaller batch.

    ``state_dict()`` / ``load_state_dict()`` hold the number of epochs drawn; the backends'
    ``Task.random_state`` include them, so that a resumed run replays the interrupted epoch's
    order.
    """

    def __init__(
        self,
        inputs: ArrayLike,
        targets: ArrayLike | None = None,
        batch_size: int = 32,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.inputs: NDArray[Any] = np.asarray(inputs)
        self.targets: NDArray[Any] | None = None if targets is None else np.asarray(targets)
        if self.targets is not None and len(self.targets) != len(self.inputs):
            raise ValueError(
                f"inputs have {len(self.inputs)} rows but targets have {len(self.targets)}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        #: Epochs drawn so far: the next iteration shuffles with ``(seed, epoch)``.
        self.epoch = 0

    def __len__(self) -> int:
        rows = len(self.inputs)
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def __iter__(self) -> Iterator[tuple[NDArray[Any], ...]]:
        rows = len(self.inputs)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(rows)
        else:
            order = np.arange(rows)
        self.epoch += 1
        for batch in range(len(self)):
            picked = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            if self.targets is None:
                yield (self.inputs[picked],)
            else:
                yield self.inputs[picked], self.targets[picked]

    def state_dict(self) -> dict[str, int]:
        """The shuffle's position: the number of epochs drawn."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])
