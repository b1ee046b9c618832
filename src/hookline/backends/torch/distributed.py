"""torch.distributed for :class:`~hookline.backends.torch.TorchTask`: joining the process group
that torchrun describes, sharding data per rank, and the collectives the engine asks for.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a task joins the process group
(gloo on CPU, nccl on CUDA, one GPU per local rank), trains through DistributedDataParallel,
shards training data with a DistributedSampler whose epoch is set every epoch, splits
evaluation data without repeating samples, and leaves the group in ``teardown``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from hookline.distributed import env_local_rank


def join_group(device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group (creating it when none exists).  Returns the device this rank
    uses (its local GPU under CUDA) and whether this call created the group."""
    if dist.is_initialized():
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", env_local_rank())
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, True


def leave_group() -> None:
    """Leave the process group once every rank has finished its collectives."""
    dist.barrier()
    dist.destroy_process_group()


def destroy_group() -> None:
    """Leave the process group at once, waiting for no other rank."""
    dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes in the group."""
    return dist.get_rank(), dist.get_world_size()


def shard_loader(data: DataLoader[Any], epoch: int | None, rank: int, world_size: int) -> Any:
    """A DataLoader over ``data``'s dataset for this rank: training (``epoch`` given) through
    a DistributedSampler, evaluation through every ``world_size``-th sample, without padding."""
    dataset = data.dataset
    sampler: Sampler[int]
    if epoch is not None:
        seed = data.generator.initial_seed() if data.generator is not None else 0
        shuffle = isinstance(data.sampler, RandomSampler)
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    else:
        sampler = EveryNth(len(dataset), rank, world_size)  # type: ignore[arg-type]
    return DataLoader(
        dataset, batch_size=data.batch_size, sampler=sampler,
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


class EveryNth(Sampler[int]):
    """Indices ``rank, rank + n, rank + 2n, ...``: an evaluation shard, no sample repeated."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
