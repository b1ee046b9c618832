"""Batches from NumPy arrays, shared by every backend: no framework needed to feed a model.

:class:`ArrayBatches` cuts ``(inputs, targets)`` arrays into batches, reshuffled each epoch by a
generator seeded from ``(seed, epoch)``.  Its only state is the number of epochs drawn so far,
so a checkpoint stores one integer and a resumed epoch draws the same order again.
:class:`ProcessShare` is one process's share of those batches in a run of several processes
(the rule of torch's ``DistributedSampler``, with the batch size as the global batch).
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
        order = self.draw_order()
        for batch in range(len(self)):
            yield self.rows(order[batch * self.batch_size : (batch + 1) * self.batch_size])

    def draw_order(self) -> NDArray[np.intp]:
        """The order of the rows for the next epoch (a permutation seeded by ``(seed,
        epoch)`` when shuffling), counting the epoch as drawn."""
        rows = len(self.inputs)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(rows)
        else:
            order = np.arange(rows)
        self.epoch += 1
        return order

    def rows(self, picked: NDArray[np.intp]) -> tuple[NDArray[Any], ...]:
        """The batch of the rows ``picked``: ``(inputs, targets)``, or ``(inputs,)``."""
        if self.targets is None:
            return (self.inputs[picked],)
        return self.inputs[picked], self.targets[picked]

    def share(self, rank: int, world_size: int) -> ProcessShare:
        """This process's share of every batch, for a run of ``world_size`` processes (see
        :class:`ProcessShare`)."""
        return ProcessShare(self, rank, world_size)

    def state_dict(self) -> dict[str, int]:
        """The shuffle's position: the number of epochs drawn."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])


class ProcessShare:
    """One process's share of an :class:`ArrayBatches`, in a run of several processes.

    The rule is the one ``torch.utils.data.DistributedSampler`` follows: the epoch's order
    (the same permutation on every process) is padded by repeating its first rows up to a
    multiple of ``world_size``, and process ``rank`` takes every ``world_size``-th row from
    its own offset.  Here ``batch_size`` is the *global* batch: global batch ``b`` is the
    ``b``-th slice of ``batch_size`` rows of that order, and each process holds
    ``batch_size // world_size`` of its rows (``rows[rank::world_size]``).  So the processes'
    batches together are exactly the batches one process draws from the same data (when the
    row count is a multiple of ``world_size``: else the padding repeats a few rows in the last
    batch), and every process has as many batches as the others, each of the same size.

    The share draws from the batches it came from: ``state_dict()`` / ``load_state_dict()``
    are theirs, so a checkpoint's shuffle position holds for any number of processes.

    :raises ValueError: when ``batch_size`` is not a multiple of ``world_size``.
    """

    def __init__(self, batches: ArrayBatches, rank: int, world_size: int) -> None:
        if batches.batch_size % world_size:
            raise ValueError(
                f"batch size {batches.batch_size} (the global batch) cannot be split evenly "
                f"over {world_size} processes: use a multiple of {world_size}"
            )
        self.batches, self.rank, self.world_size = batches, rank, world_size
        self.batch_size = batches.batch_size // world_size

    def __len__(self) -> int:
        rows = -(-len(self.batches.inputs) // self.world_size) * self.world_size
        size = self.batches.batch_size
        return rows // size if self.batches.drop_last else -(-rows // size)

    def __iter__(self) -> Iterator[tuple[NDArray[Any], ...]]:
        order = self.batches.draw_order()
        padding = -len(order) % self.world_size
        if padding:
            order = np.concatenate([order, np.resize(order, padding)])
        size = self.batches.batch_size
        for batch in range(len(self)):
            picked = order[batch * size : (batch + 1) * size]
            yield self.batches.rows(picked[self.rank :: self.world_size])

    def state_dict(self) -> dict[str, int]:
        """The shuffle's position of the batches shared (see :meth:`ArrayBatches.state_dict`)."""
        return self.batches.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.batches.load_state_dict(state)
