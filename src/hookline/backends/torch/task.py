""":class:`TorchTask`: a PyTorch model, its loss and optimizer behind the Task protocol.

A task holds a model, a loss (any callable ``loss(outputs, targets)``), an optimizer (an
instance, or a factory called with the model's parameters), optional metric functions
``metric(outputs, targets) -> tensor`` computed on the device, the device, gradient accumulation,
gradient-norm clipping and autocast mixed precision.  Data is any iterable of batches: a
``DataLoader``, ``(inputs, targets)`` tuples, ``{"inputs": ..., "targets": ...}`` dicts, or
bare input tensors for prediction.  Under torchrun it trains distributed (see
:mod:`hookline.backends.torch.distributed`): DistributedDataParallel by default, or FSDP2 with
``strategy="fsdp"`` (:mod:`hookline.backends.torch.fsdp`), whose checkpoints are directories of
shards (:mod:`hookline.backends.torch.sharded`); a single process is untouched.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from hookline.backends.batches import batch_parts
from hookline.backends.torch import fsdp as torch_fsdp
from hookline.backends.torch import sharded as torch_sharded
from hookline.backends.torch import state as torch_state
from hookline.backends.torch.distributed import (
    destroy_group,
    join_group,
    leave_group,
    leave_group_at_exit,
    max_over_ranks,
    pad_batches,
    rank_and_size,
    shard_loader,
    sum_over_ranks,
)
from hookline.backends.torch.export import EXPORT_SUFFIXES, ExportError, export_model
from hookline.distributed import env_world_size
from hookline.engine.task import Stage, StatefulMetric, split_metrics
from hookline.errors import UserError

LossFn = Callable[[Any, Any], torch.Tensor]
MetricFn = Callable[[Any, Any], torch.Tensor]
OptimizerFactory = Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer]

PRECISIONS = ("32", "16-mixed", "bf16-mixed")


class TaskSettingError(UserError, ValueError):
    """A :class:`TorchTask` argument that cannot be used here (a device, a precision, ...)."""


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when it is available, else the CPU.

    :raises TaskSettingError: for a name that is no device, or a CUDA device that this
        machine does not have.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise TaskSettingError(
            f"device {str(device)!r} is not a device: use auto, cpu, cuda or cuda:N"
        ) from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise TaskSettingError(
                f"device {str(device)!r} was asked for, but CUDA is not available"
            )
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise TaskSettingError(
                f"device {str(device)!r} was asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return chosen


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of rows whose highest-scoring class is the target (stays on the device)."""
    return (outputs.argmax(dim=1) == targets).float().mean()


class TorchTask(torch_state.TorchStateMethods):
    """A PyTorch model with its loss and optimizer, driven by the hookline engine.

    :param model: the ``nn.Module`` to train.
    :param loss: ``loss(outputs, targets)`` returning a scalar tensor.
    :param optimizer: an optimizer, or a factory ``f(parameters) -> optimizer`` (created at the
        start of training, after the model is on its device).
    :param metrics: name to ``f(outputs, targets) -> scalar tensor`` (averaged over samples),
        or to a stateful metric with ``update``/``compute``/``reset`` such as a
        ``torchmetrics.Metric`` (computed once over the whole set: right for F1, AUC, ...,
        and synced over processes under torchrun, which torchmetrics does in ``compute``);
        reported in validation as ``val/<name>`` next to ``val/loss``.
    :param device: ``"auto"`` (CUDA when present, else CPU), or any torch device string.
    :param accumulate_grad_batches: accumulate gradients over this many batches per step.
    :param grad_clip_norm: clip the gradients' total norm to this value before each step.
    :param precision: ``"32"``; ``"bf16-mixed"`` (autocast to bfloat16, CPU or CUDA); or
        ``"16-mixed"`` (autocast to float16 with a gradient scaler, CUDA only).
    :param postprocess: applied to the model's outputs in prediction (e.g. softmax).
    :param example_input: an input batch used to trace exports; by default the first batch the
        task sees.
    :param distributed: ``"auto"`` joins a distributed run when launched by torchrun (or
        another launcher that sets ``WORLD_SIZE``); ``False`` never does.
    :param grad_scaler: a ``torch.amp.GradScaler`` to scale the loss with, instead of the one
        ``16-mixed`` creates (for example with another ``init_scale``); it may be used with
        any precision.
    :param strategy: how a distributed run shares the model: ``"ddp"`` (every process holds
        all of it; ``"auto"`` means this) or ``"fsdp"`` (FSDP2: each process holds a shard of
        the parameters and of the optimizer state).  With ``"fsdp"`` the optimizer must be a
        factory (it is built after sharding), a DataLoader's batch size is the *global* batch
        (each of N processes takes batch / N, which must divide), evaluation pads the ranks
        with fewer batches with empty ones (every forward is a collective) and checkpoints are
        directories of shards that resume on any number of processes (also in a single
        process, where nothing is sharded).
    :param shard_modules: with ``"fsdp"``, the modules sharded one by one before the whole
        model: modules of the model, module classes (every submodule of one), or a function
        ``f(model)`` returning modules; by default each direct child holding parameters.

    Plugins see final, unscaled gradients in ``on_before_optimizer_step``: the engine calls
    :meth:`unscale_gradients` first, and :meth:`optimizer_step` does not unscale twice.
    """

    export_formats = tuple(EXPORT_SUFFIXES)
    #: The running means of the loss sum every 16 losses kept on an accelerator (on the CPU
    #: they are numbers, see :meth:`detach`): a 0-d tensor kept for the whole epoch is a small
    #: block that stays among each step's large temporaries on the heap, and a few hundred of
    #: them fragmented the CPU's (peak RSS 1.086x the plain loop's on
    #: ``benchmarks/workload.py``, 1.02x with sums of 16, 1.07x with sums of 64).
    values_per_sum = 16

    def __init__(
        self,
        model: nn.Module,
        loss: LossFn,
        optimizer: torch.optim.Optimizer | OptimizerFactory | None = None,
        *,
        metrics: Mapping[str, MetricFn | StatefulMetric] | None = None,
        device: str | torch.device | None = "auto",
        accumulate_grad_batches: int = 1,
        grad_clip_norm: float | None = None,
        precision: str = "32",
        postprocess: Callable[[torch.Tensor], Any] | None = None,
        example_input: torch.Tensor | None = None,
        distributed: bool | str = "auto",
        grad_scaler: torch.amp.GradScaler | None = None,
        strategy: str = "auto",
        shard_modules: torch_fsdp.ShardModules | None = None,
    ) -> None:
        if strategy not in torch_fsdp.STRATEGIES:
            raise TaskSettingError(
                f"strategy must be one of {', '.join(torch_fsdp.STRATEGIES)}, got {strategy!r}"
            )
        if strategy == "fsdp" and isinstance(optimizer, torch.optim.Optimizer):
            raise TaskSettingError(
                "strategy 'fsdp' needs the optimizer as a factory (optimizer=lambda params: "
                "torch.optim.AdamW(params, ...)): one built before sharding trains nothing"
            )
        if precision not in PRECISIONS:
            raise TaskSettingError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        if accumulate_grad_batches < 1:
            raise TaskSettingError(
                f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}"
            )
        self.device = select_device(device)
        if precision == "16-mixed" and self.device.type != "cuda":
            raise TaskSettingError(
                "precision '16-mixed' needs a CUDA device; use 'bf16-mixed' on CPU"
            )
        self.model = model
        self.loss = loss
        self.metrics = dict(metrics or {})
        self._functions, self._stateful = split_metrics(self.metrics)
        self.accumulate_grad_batches = accumulate_grad_batches
        self.grad_clip_norm = grad_clip_norm
        self.precision = precision
        self.postprocess = postprocess
        self.example_input = example_input
        self._optimizer_spec = optimizer
        self.optimizer: torch.optim.Optimizer | None = (
            optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
        )
        # one context for every step (entered once at a time): building it per step costs
        self._autocast: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if precision == "32" else torch.autocast(
                self.device.type,
                dtype=torch.bfloat16 if precision == "bf16-mixed" else torch.float16,
            )
        )
        self.scaler = grad_scaler if grad_scaler is not None else torch.amp.GradScaler(
            self.device.type, enabled=precision == "16-mixed"
        )
        self._unscaled = False  # the gradients of the coming step were unscaled already
        self._placed = False
        self.distributed = (distributed == "auto" and env_world_size() > 1) or distributed is True
        self.rank, self.world_size = 0, 1
        self._ddp: nn.Module | None = None
        self._owns_group = False
        self._shards: dict[tuple[int, bool], Any] = {}
        self.strategy = "ddp" if strategy == "auto" else strategy
        self.shard_modules = shard_modules
        self._fsdp = False  # the model is sharded over the processes
        self._template: nn.Module | None = None  # the model's structure before sharding
        self._saver = torch_sharded.ShardedSaver()

    # -- set-up --------------------------------------------------------------------------------

    def setup(self, stage: Stage) -> None:
        # again at each phase, so that metrics added to the dict in between count
        self._functions, self._stateful = split_metrics(self.metrics)
        if self.distributed:
            self._join_group()
        if not self._placed:
            self.model.to(self.device)
            self._placed = True
        for metric in self._stateful.values():
            if isinstance(metric, nn.Module):  # torchmetrics: its state on the device too
                metric.to(self.device)
        if self.strategy == "fsdp" and self.world_size > 1 and not self._fsdp:
            self._template = torch_fsdp.plain_template(self.model)
            torch_fsdp.shard_model(
                self.model, self.device, self.world_size, self.shard_modules, self.precision
            )
            self._fsdp = True
            if self.device.type == "cuda" and self.precision != "32":
                self._autocast = contextlib.nullcontext()  # FSDP2's policy casts instead
        if stage == "fit":
            self._ensure_optimizer()
            if self.world_size > 1 and self._ddp is None and not self._fsdp:
                from torch.nn.parallel import DistributedDataParallel

                ids = [self.device.index] if self.device.type == "cuda" else None
                self._ddp = DistributedDataParallel(self.model, device_ids=ids)

    def _join_group(self) -> None:
        device, self._owns_group = join_group(self.device)
        if device != self.device:
            self.device, self._placed = device, False
        self.rank, self.world_size = rank_and_size()

    def teardown(self) -> None:
        """Leave the process group if this task created it (a later phase joins again).  A
        sharded model keeps it (its shards live on it) until the process exits."""
        self._saver.wait()
        if self._fsdp:
            self._shards.clear()
            leave_group_at_exit()
            return
        if self._owns_group:
            self._ddp = None  # release DDP's reducer before its process group
            self._shards.clear()
            leave_group()  # no rank leaves while another still finishes a collective
            self._owns_group = False
            self.rank, self.world_size = 0, 1

    def abort(self) -> None:
        """After a failure: leave the process group without a barrier (the other ranks then
        fail their next collective at once, instead of waiting for this one)."""
        if self._owns_group:
            self._ddp = None
            self._shards.clear()
            self._fsdp = False
            destroy_group()
            self._owns_group = False
            self.rank, self.world_size = 0, 1

    # -- distributed ---------------------------------------------------------------------------

    def shard(self, data: Iterable[Any], epoch: int | None) -> Iterable[Any]:
        """Outside distributed runs, ``data`` itself; otherwise this rank's part of a
        DataLoader (see :func:`~hookline.backends.torch.distributed.shard_loader`)."""
        fsdp = self.strategy == "fsdp"
        if not isinstance(data, DataLoader) or (self.world_size == 1 and not fsdp):
            return data
        if self.world_size == 1 and epoch is None:
            return data
        key = (id(data), epoch is not None)
        if key not in self._shards:
            if fsdp and epoch is not None:
                # the same samples in the same global batches on any number of processes
                self._shards[key] = shard_loader(
                    data, epoch, self.rank, self.world_size, global_batch=True
                )
            else:
                self._shards[key] = shard_loader(data, epoch, self.rank, self.world_size)
        loader: DataLoader[Any] = self._shards[key]
        if epoch is not None:
            loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            return loader
        if fsdp:  # every forward is a collective: as many batches on every rank
            return pad_batches(loader, int(max_over_ranks(len(loader), self.device)))
        return loader

    def weighted_sum(self, values: Sequence[Any], weights: Sequence[int]) -> Any:
        if not all(isinstance(value, torch.Tensor) for value in values):
            return sum(float(value) * weight for value, weight in zip(values, weights, strict=True))
        try:
            stacked = torch.stack(list(values))  # one call when they share a shape (the rule)
        except RuntimeError:  # shapes () and (1,) mixed: one reshape per value
            stacked = torch.stack([value.reshape(()) for value in values])
        return stacked.reshape(-1).double() @ torch.tensor(
            weights, dtype=torch.float64, device=stacked.device
        )

    def reduce_sum(self, value: Any) -> Any:
        return value if self.world_size == 1 else sum_over_ranks(value, self.device)

    def _ensure_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            if self._optimizer_spec is None:
                raise ValueError("this TorchTask has no optimizer: it cannot be trained")
            factory: OptimizerFactory = self._optimizer_spec  # type: ignore[assignment]
            self.optimizer = factory(self.model.parameters())
        return self.optimizer

    def train_mode(self, enabled: bool) -> None:
        self.model.train(enabled)

    # -- batches -------------------------------------------------------------------------------

    def _to_device(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.device != self.device:
            return value.to(self.device, non_blocking=True)
        return value

    def _inputs_targets(self, batch: Any) -> tuple[Any, Any]:
        inputs, targets = batch_parts(batch)
        if self.example_input is None and isinstance(inputs, torch.Tensor):
            self.example_input = inputs[:2].detach().clone()  # moved to the CPU at export
        return self._to_device(inputs), self._to_device(targets)

    def batch_size(self, batch: Any) -> int:
        inputs, _ = batch_parts(batch)
        return inputs.shape[0] if isinstance(inputs, torch.Tensor) else len(inputs)

    # -- steps ---------------------------------------------------------------------------------

    def training_step(self, batch: Any) -> torch.Tensor:
        inputs, targets = self._inputs_targets(batch)
        model = self._ddp if self._ddp is not None else self.model
        with self._autocast:
            outputs = model(inputs)
            loss = self.loss(outputs, targets)
        return loss

    def backward(self, loss: torch.Tensor) -> None:
        scaled = loss / self.accumulate_grad_batches if self.accumulate_grad_batches > 1 else loss
        if self.scaler.is_enabled():
            scaled = self.scaler.scale(scaled)
        scaled.backward()

    def unscale_gradients(self) -> None:
        """Divide the gradients by the loss scale (when a gradient scaler is in use), once per
        step."""
        if self.scaler.is_enabled() and not self._unscaled:
            self.scaler.unscale_(self._ensure_optimizer())
            self._unscaled = True

    def optimizer_step(self) -> None:
        optimizer = self._ensure_optimizer()
        if self.grad_clip_norm is not None:
            self.unscale_gradients()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        if self.scaler.is_enabled():
            self.scaler.step(optimizer)  # skips the step when a gradient is not finite
            self.scaler.update()
        else:
            optimizer.step()
        self._unscaled = False

    def learning_rates(self) -> list[float]:
        return [float(group["lr"]) for group in self._ensure_optimizer().param_groups]

    def set_learning_rates(self, rates: Sequence[float]) -> None:
        groups = self._ensure_optimizer().param_groups
        if len(rates) != len(groups):
            raise ValueError(f"{len(rates)} learning rates for {len(groups)} parameter groups")
        for group, rate in zip(groups, rates, strict=True):
            group["lr"] = rate

    def zero_grad(self) -> None:
        self._ensure_optimizer().zero_grad(set_to_none=True)

    @torch.no_grad()
    def validation_step(self, batch: Any) -> dict[str, torch.Tensor]:
        inputs, targets = self._inputs_targets(batch)
        with self._autocast:
            outputs = self.model(inputs)
            if self.batch_size(batch) == 0:  # a padding batch (strategy="fsdp"): weight 0
                zero = torch.zeros((), device=self.device)
                return {"loss": zero, **{name: zero for name in self._functions}}
            results = {"loss": self.loss(outputs, targets).float()}
        for name, function in self._functions.items():
            results[name] = function(outputs.float(), targets).float()
        for metric in self._stateful.values():
            metric.update(outputs.float(), targets)
        return results

    def reset_metrics(self) -> None:
        """Clear the stateful metrics before a validation run."""
        for metric in self._stateful.values():
            metric.reset()

    @torch.no_grad()
    def compute_metrics(self) -> dict[str, torch.Tensor]:
        """Each stateful metric over the whole run (a torchmetrics metric syncs its state over
        processes here)."""
        return {name: metric.compute() for name, metric in self._stateful.items()}

    @torch.no_grad()
    def predict_step(self, batch: Any) -> Any:
        inputs, _ = self._inputs_targets(batch)
        with self._autocast:
            outputs = self.model(inputs)
        return self.postprocess(outputs) if self.postprocess is not None else outputs

    def detach(self, value: Any) -> Any:
        """``value`` without its autograd history; a one-element tensor on the CPU as a
        number: reading it there waits for nothing (about 1 us), and a number costs the running
        means nothing to keep or to sum, where keeping 0-d tensors and summing them in groups
        of 16 cost a bare loop about 9 us a step."""
        if not isinstance(value, torch.Tensor):
            return value
        if value.is_cpu and value.numel() == 1:  # is_cpu: 44 ns, device.type == "cpu" 288
            return value.item()
        return value.detach()

    def to_float(self, value: Any) -> float:
        return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)

    # -- state ---------------------------------------------------------------------------------

    def random_state(self, data: Iterable[Any]) -> dict[str, Any]:
        """See :func:`hookline.backends.torch.state.random_state`."""
        return torch_state.random_state(data)

    def set_random_state(self, state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
        if any(data is loader for loader in self._shards.values()):
            data = None  # a rank's own loader: its sampler draws from a seed, not a generator
        torch_state.set_random_state(state, data)

    # -- sharded checkpoints (strategy="fsdp") ----------------------------------------------------

    @property
    def sharded(self) -> bool:
        """Whether checkpoints are directories of shards (``strategy="fsdp"``)."""
        return self.strategy == "fsdp"

    #: The format a sharded checkpoint's header names.
    sharded_format = torch_sharded.FORMAT

    def save_sharded(
        self, directory: Path | None, checkpoint: Mapping[str, Any],
        finish: Callable[[Path], None] | None = None, *, asynchronous: bool = False,
    ) -> Path:
        """Write ``checkpoint`` as a directory of shards with every process (see
        :meth:`hookline.backends.torch.sharded.ShardedSaver.save`)."""
        return self._saver.save(
            directory, self.model, self.optimizer, checkpoint, finish, asynchronous=asynchronous
        )

    def wait_sharded(self) -> None:
        """Wait for the asynchronous save in flight, if any."""
        self._saver.wait()

    def load_sharded(self, directory: Path, source: str) -> dict[str, Any]:
        """A sharded checkpoint's plain part for this process; its tensors are read by
        :meth:`load_state_dict`.  Outside a sharded run, ``task["model"]`` holds the whole
        model's weights too (what ``hookline val``/``predict``/``export`` build from)."""
        checkpoint = torch_sharded.load_checkpoint(directory, source)
        if not self._fsdp:
            checkpoint["task"]["model"] = torch_sharded.load_model(directory, self.model)
        return checkpoint

    def parameters(self) -> dict[str, Any]:
        """``model.named_parameters()``, detached (the same storage: no copy)."""
        return {name: value.detach() for name, value in self.model.named_parameters()}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.model.state_dict()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "sharded" in state:  # load_sharded's: read the shards into the model as it is now
            torch_sharded.load_into(
                Path(state["sharded"]), state.get("extras", []), self.model, self.optimizer
            )
            return
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self._ensure_optimizer().load_state_dict(state["optimizer"])
        elif self._optimizer_spec is not None:
            warnings.warn(
                "the checkpoint holds no optimizer state: the optimizer starts afresh (its "
                "moments and step counts are lost)", stacklevel=2,
            )
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])

    # -- export --------------------------------------------------------------------------------

    def export(self, format: str, path: Path) -> Path:
        """Write the model as ``format`` and check the artifact (see
        :func:`~hookline.backends.torch.export.export_model`)."""
        if self.example_input is None:
            raise ExportError("export needs an example input: pass example_input= to TorchTask")
        if self._fsdp and self._template is not None:  # gather the shards into a plain model
            state = torch_fsdp.full_state_dict(self.model)  # every rank; rank zero gets it
            if self.rank != 0:  # rank zero writes the file
                return path.with_suffix(EXPORT_SUFFIXES.get(format, path.suffix))
            plain = torch_fsdp.full_model(self._template, state).eval()
            return export_model(plain, self.example_input.to("cpu"), format, path)
        model = self.model.to("cpu").eval()
        try:
            return export_model(model, self.example_input.to("cpu"), format, path)
        finally:
            self.model.to(self.device)
            self._placed = True


