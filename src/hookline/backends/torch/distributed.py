"""torch.distributed for :class:`~hookline.backends.torch.TorchTask`: joining the process group
that torchrun describes, sharding data per rank, and the collectives the engine asks for.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a task joins the process group
(gloo on CPU, nccl on CUDA, one GPU per local rank), trains through DistributedDataParallel,
shards training data with a DistributedSampler whose epoch is set every epoch, splits
evaluation data without repeating samples, and leaves the group in ``teardown``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import PrefixStore
from torch.distributed.rendezvous import rendezvous
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from hookline.distributed import elastic_attempt, env_local_rank
from hookline.errors import UserError

#: How long the barrier at exit waits for the other ranks, and the grace gloo's threads get.
EXIT_BARRIER_SECONDS = 60
EXIT_GRACE_SECONDS = 0.1


class BatchSizeError(UserError, ValueError):
    """A global batch that does not divide among the processes."""


def join_group(device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group (creating it when none exists).  Returns the device this rank
    uses (its local GPU under CUDA) and whether this call created the group."""
    if dist.is_initialized():
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", env_local_rank())
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    attempt = elastic_attempt()
    if attempt is None:
        dist.init_process_group(backend)
        return device, True
    # torchrun's store outlives a restart (--max-restarts): each attempt meets under its own
    # prefix, or a restarted rank may read the address its killed predecessor published and
    # fail to connect (pytorch/pytorch#135712)
    store, rank, world_size = next(rendezvous("env://"))
    attempt_store = PrefixStore(f"hookline/attempt{attempt}/", store)
    dist.init_process_group(backend, store=attempt_store, rank=rank, world_size=world_size)
    return device, True


def leave_group() -> None:
    """Leave the process group once every rank has finished its collectives."""
    dist.barrier()
    dist.destroy_process_group()


@dataclasses.dataclass
class _ExitPlan:
    """What the process does at exit (:func:`_at_exit`)."""

    #: Leave the process group (a barrier first).
    leave: bool = False
    #: Give gloo's worker threads a moment before the interpreter finalizes.
    settle: bool = False


_EXIT = _ExitPlan()


def leave_group_at_exit() -> None:
    """Leave the process group when the process exits (after a barrier, so that no rank
    leaves while another still finishes a collective): for a sharded model, whose shards live
    on the group after its phase ends."""
    _EXIT.leave = True


def settle_at_exit() -> None:
    """Let gloo's worker threads drop their last collective's tensors before the interpreter
    finalizes (:func:`_at_exit`): for collectives on a group hookline does not own, which a
    host trainer leaves (or not) on its own terms.  Nothing happens under nccl."""
    if not _EXIT.settle and dist.is_initialized() and dist.get_backend() == "gloo":
        _EXIT.settle = True


# registered when this module loads, before a run starts: exit handlers run last registered
# first, so this one comes after what a host or hookline registers later (the background
# checkpoint writer completing its file, a host's own clean-up), as the last word before the
# interpreter finalizes
@atexit.register
def _at_exit() -> None:
    settle = _EXIT.settle
    if _EXIT.leave and dist.is_initialized():
        gloo = dist.get_backend() == "gloo"
        settle = settle or gloo
        with contextlib.suppress(Exception):  # another rank is gone: leave anyway
            if gloo:  # on this thread: no work queued on gloo's threads (see below)
                dist.monitored_barrier(timeout=timedelta(seconds=EXIT_BARRIER_SECONDS))
            else:
                dist.barrier()
        dist.destroy_process_group()
    if settle:
        # A gloo worker thread releases its last collective's tensors a moment after the
        # collective completes; while the group outlives its phase (a sharded model's shards,
        # a host's DDP wrapper) nothing joins those threads, and a tensor that Python also
        # referred to needs the GIL to be freed.  Once the interpreter began finalizing, taking
        # the GIL ends the thread through a forced unwind, and the process aborts ("terminate
        # called without an active exception", pytorch/pytorch#190489): here 2 exits in 6 of a
        # Hugging Face Trainer under torchrun on a loaded machine.  A moment with the GIL
        # released, while the interpreter is whole, lets them finish first.
        time.sleep(EXIT_GRACE_SECONDS)


def destroy_group() -> None:
    """Leave the process group at once, waiting for no other rank."""
    dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes in the group."""
    return dist.get_rank(), dist.get_world_size()


def shard_loader(
    data: DataLoader[Any], epoch: int | None, rank: int, world_size: int,
    *, global_batch: bool = False,
) -> Any:
    """A DataLoader over ``data``'s dataset for this rank: training (``epoch`` given) through
    a DistributedSampler, evaluation through every ``world_size``-th sample, without padding.

    With ``global_batch``, ``data``'s batch size is the global batch: each rank takes
    ``batch_size / world_size`` of it, so that optimizer step ``k`` sees the same samples on
    any number of processes.

    :raises BatchSizeError: when the global batch does not divide among the processes.
    """
    dataset = data.dataset
    sampler: Sampler[int]
    batch_size = data.batch_size
    if global_batch and batch_size is not None:
        if batch_size % world_size:
            raise BatchSizeError(
                f"batch size {batch_size} (the global batch under strategy=fsdp) does not "
                f"divide among {world_size} processes: use a multiple of {world_size}"
            )
        batch_size //= world_size
    if epoch is not None:
        seed = data.generator.initial_seed() if data.generator is not None else 0
        shuffle = isinstance(data.sampler, RandomSampler)
        sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
    else:
        sampler = EveryNth(len(dataset), rank, world_size)  # type: ignore[arg-type]
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler,
        num_workers=data.num_workers, collate_fn=data.collate_fn,
        pin_memory=data.pin_memory, drop_last=data.drop_last,
    )


def sum_over_ranks(value: Any, device: torch.device) -> Any:
    """``value`` (a tensor or a number) summed over every rank."""
    if isinstance(value, torch.Tensor):
        summed = value.detach().clone()
        dist.all_reduce(summed)
        return summed
    number = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(number)
    return type(value)(number.item())


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest of every rank's ``value``."""
    number = torch.tensor(value, dtype=torch.int64, device=device)
    dist.all_reduce(number, op=dist.ReduceOp.MAX)
    return int(number.item())


def empty_like_batch(batch: Any) -> Any:
    """``batch`` with no rows: every tensor in it sliced to length 0."""
    if isinstance(batch, torch.Tensor):
        return batch[:0]
    if isinstance(batch, dict):
        return {key: empty_like_batch(value) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(empty_like_batch(value) for value in batch)
    return batch


def pad_batches(data: Iterable[Any], count: int) -> Iterator[Any]:
    """``data``'s batches, then empty ones (no rows: they count for nothing in the metrics)
    up to ``count`` batches, so that every rank runs as many forwards (under FSDP each is a
    collective)."""
    done, empty = 0, None
    for batch in data:
        if empty is None:
            empty = empty_like_batch(batch)
        done += 1
        yield batch
    if done < count and empty is None:
        raise ValueError("a rank has no evaluation batch to pad from: too few samples")
    for _ in range(count - done):
        yield empty


class EveryNth(Sampler[int]):
    """Indices ``rank, rank + n, rank + 2n, ...``: an evaluation shard, no sample repeated."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
