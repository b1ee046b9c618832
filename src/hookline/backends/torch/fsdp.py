"""FSDP2 for :class:`~hookline.backends.torch.TorchTask` (``strategy="fsdp"``): sharding a
model over every process, and gathering its full weights back into a plain model.

``fully_shard`` is applied to each module to shard (by default each direct child of the model
that holds parameters), then to the model itself, over a one-dimensional device mesh of every
process (``init_device_mesh``: gloo on CPU, nccl on CUDA).  Each process then keeps only its
shard of every parameter and of the optimizer's state; a forward all-gathers a module's
parameters just before it runs, so every forward is a collective.  The optimizer must be built
*after* sharding (an optimizer built before holds the unsharded parameters and trains
nothing): ``strategy="fsdp"`` takes it as a factory.

On CUDA, ``bf16-mixed`` and ``16-mixed`` go through FSDP2's ``MixedPrecisionPolicy``
(parameters gathered in the low precision, gradients reduced in float32).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

#: What ``shard_modules`` may be: modules of the model, module classes (every submodule of
#: one of them is sharded, like a transformer's blocks), or a function of the model returning
#: its modules to shard.
ShardModules = Iterable[nn.Module] | Iterable[type] | Callable[[nn.Module], Iterable[nn.Module]]

STRATEGIES = ("auto", "ddp", "fsdp")


def default_shard_modules(model: nn.Module) -> list[nn.Module]:
    """Each direct child of ``model`` that holds parameters (the root is sharded after them)."""
    return [child for child in model.children() if next(child.parameters(), None) is not None]


def modules_to_shard(model: nn.Module, spec: ShardModules | None) -> list[nn.Module]:
    """The modules ``spec`` names (see :data:`ShardModules`), in the model's order, without the
    root and without repeats.

    :raises ValueError: for a module that is not part of ``model``, or an entry that is neither
        a module nor a module class.
    """
    if spec is None:
        return default_shard_modules(model)
    chosen: list[Any] = (
        list(spec(model)) if callable(spec) and not isinstance(spec, type)
        else list(spec)  # type: ignore[arg-type]
    )
    classes = tuple(entry for entry in chosen if isinstance(entry, type))
    modules = [entry for entry in chosen if isinstance(entry, nn.Module)]
    if len(classes) + len(modules) != len(chosen):
        raise ValueError("shard_modules takes modules of the model or module classes")
    owned = {id(module) for module in model.modules()}
    for module in modules:
        if id(module) not in owned:
            raise ValueError(
                f"shard_modules names a {type(module).__name__} that is not in the model"
            )
    wanted = {id(module) for module in modules}
    return [
        module for module in model.modules()
        if module is not model and (id(module) in wanted or isinstance(module, classes or ()))
    ]


def mixed_precision(device: torch.device, precision: str) -> Any:
    """FSDP2's ``MixedPrecisionPolicy`` for ``precision`` on CUDA, else ``None`` (on the CPU a
    mixed precision stays autocast's)."""
    if device.type != "cuda" or precision == "32":
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def plain_template(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are on the meta device (no memory):
    what :func:`full_model` fills with the gathered weights.  Taken before sharding."""
    memo: dict[int, Any] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(
            tensor, nn.Parameter
        ) else meta
    return copy.deepcopy(model, memo)


def shard_model(
    model: nn.Module, device: torch.device, world_size: int, spec: ShardModules | None,
    precision: str,
) -> None:
    """``fully_shard`` each module of :func:`modules_to_shard`, then ``model``, over every
    process (in place: ``model`` becomes an FSDP module)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    options: dict[str, Any] = {"mesh": mesh}
    policy = mixed_precision(device, precision)
    if policy is not None:
        options["mp_policy"] = policy
    for module in modules_to_shard(model, spec):
        fully_shard(module, **options)
    fully_shard(model, **options)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the CPU, gathered from every process (a collective: every
    rank calls it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state: dict[str, torch.Tensor] = get_model_state_dict(  # type: ignore[assignment]
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    return state


def full_model(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A plain (unsharded) model on the CPU: ``template`` filled with ``state``."""
    plain = copy.deepcopy(template).to_empty(device="cpu")
    plain.load_state_dict(state)
    return plain
