"""The state part of the Task protocol over a torch model and optimizer that hookline does not
own: what the bridges give plugins inside a Hugging Face or Lightning ``Trainer``, or inside a
user's own loop (:mod:`hookline.bridges`).

The host keeps training; plugins read the model's parameters and gradients, set learning
rates, and save and restore the model and optimizer in hookline's checkpoint format.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from hookline.backends.torch import state as torch_state


class TorchHostState(torch_state.TorchStateMethods):
    """:class:`hookline.StateTask` over ``model`` and ``optimizer`` as a host trains them.

    :param model: the ``nn.Module`` being trained (unwrapped: not the DDP wrapper).
    :param optimizer: its optimizer; a host that builds one late (Hugging Face builds it when
        training starts) sets :attr:`optimizer` then.

    A learning rate a plugin sets is *pinned*: hosts whose own scheduler rewrites the rates
    after every step call :meth:`restore_learning_rates` before the next step, so that the
    plugin's rate is the one used.
    """


    def __init__(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self._pinned: list[float] | None = None

    @property
    def rank(self) -> int:
        """This process's rank in the default process group (0 without one)."""
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @property
    def world_size(self) -> int:
        """The number of processes in the default process group (1 without one)."""
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def to_float(self, value: Any) -> float:
        return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)

    def reduce_sum(self, value: Any) -> Any:
        """``value`` summed over the default process group (a number stays a number)."""
        if self.world_size == 1:
            return value
        device = _collective_device()
        tensor = (
            value.detach().to(device).clone() if isinstance(value, torch.Tensor)
            else torch.tensor(value, device=device)
        )
        dist.all_reduce(tensor)
        from hookline.backends.torch.distributed import settle_at_exit  # needs torch.distributed

        settle_at_exit()  # the host leaves its group on its own terms, or never
        return tensor if isinstance(value, torch.Tensor) else tensor.item()

    def parameters(self) -> dict[str, Any]:
        """``model.named_parameters()``, detached (the same storage: no copy)."""
        return {name: value.detach() for name, value in self.model.named_parameters()}

    def _groups(self) -> list[dict[str, Any]]:
        if self.optimizer is None:
            raise RuntimeError("the host has not created its optimizer yet")
        return list(self.optimizer.param_groups)

    def learning_rates(self) -> list[float]:
        return [float(group["lr"]) for group in self._groups()]

    def set_learning_rates(self, rates: Sequence[float]) -> None:
        groups = self._groups()
        if len(rates) != len(groups):
            raise ValueError(f"{len(rates)} learning rates for {len(groups)} parameter groups")
        for group, rate in zip(groups, rates, strict=True):
            group["lr"] = float(rate)
        self._pinned = [float(rate) for rate in rates]

    def restore_learning_rates(self) -> None:
        """Put back the rates a plugin set last, if the host's own scheduler changed them."""
        if self._pinned is not None and self.optimizer is not None:
            for group, rate in zip(self.optimizer.param_groups, self._pinned, strict=False):
                group["lr"] = rate

    def random_state(self, data: Iterable[Any]) -> dict[str, Any]:
        """See :func:`hookline.backends.torch.state.random_state`."""
        return torch_state.random_state(data)

    def set_random_state(self, state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
        torch_state.set_random_state(state, data)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.model.state_dict()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state and self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])


def _collective_device() -> torch.device:
    """Where the default group's collectives run: the current CUDA device under NCCL."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
