"""The PyTorch backend: :class:`TorchTask` (torch is imported here and nowhere else in hookline).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a task joins the process group
(gloo on CPU, nccl on CUDA, one GPU per local rank), trains through DistributedDataParallel,
shards training data with a DistributedSampler whose epoch is set every epoch, splits
evaluation data without repeating samples, and leaves the group in ``teardown``.  A single
process is untouched.

A task holds a model, a loss (any callable ``loss(outputs, targets)``), an optimizer (an
instance, or a factory called with the model's parameters), optional metric functions
``metric(outputs, targets) -> tensor`` computed on the device, the device, gradient accumulation,
gradient-norm clipping and autocast mixed precision.  Data is any iterable of batches: a
``DataLoader``, ``(inputs, targets)`` tuples, ``{"inputs": ..., "targets": ...}`` dicts, or
bare input tensors for prediction.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from hookline.backends.base import Stage
from hookline.backends.numpy import python_numpy_random_state, set_python_numpy_random_state
from hookline.distributed import env_local_rank, env_world_size
from hookline.errors import UserError

LossFn = Callable[[Any, Any], torch.Tensor]
MetricFn = Callable[[Any, Any], torch.Tensor]
OptimizerFactory = Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer]

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
EXPORT_SUFFIXES = {"torchscript": ".torchscript", "pt2": ".pt2", "onnx": ".onnx"}


class ExportError(UserError, RuntimeError):
    """An export could not be written, or its outputs differ from the model's."""


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when it is available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available")
    return chosen


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of rows whose highest-scoring class is the target (stays on the device)."""
    return (outputs.argmax(dim=1) == targets).float().mean()


class TorchTask:
    """A PyTorch model with its loss and optimizer, driven by the hookline engine.

    :param model: the ``nn.Module`` to train.
    :param loss: ``loss(outputs, targets)`` returning a scalar tensor.
    :param optimizer: an optimizer, or a factory ``f(parameters) -> optimizer`` (created at the
        start of training, after the model is on its device).
    :param metrics: name to ``f(outputs, targets) -> scalar tensor``, reported in validation
        as ``val/<name>`` next to ``val/loss``.
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
    """

    export_formats = tuple(EXPORT_SUFFIXES)

    def __init__(
        self,
        model: nn.Module,
        loss: LossFn,
        optimizer: torch.optim.Optimizer | OptimizerFactory | None = None,
        *,
        metrics: Mapping[str, MetricFn] | None = None,
        device: str | torch.device | None = "auto",
        accumulate_grad_batches: int = 1,
        grad_clip_norm: float | None = None,
        precision: str = "32",
        postprocess: Callable[[torch.Tensor], Any] | None = None,
        example_input: torch.Tensor | None = None,
        distributed: bool | str = "auto",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if accumulate_grad_batches < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        self.device = select_device(device)
        if precision == "16-mixed" and self.device.type != "cuda":
            raise ValueError("precision '16-mixed' needs a CUDA device; use 'bf16-mixed' on CPU")
        self.model = model
        self.loss = loss
        self.metrics = dict(metrics or {})
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
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=precision == "16-mixed"
        )
        self._placed = False
        self.distributed = (distributed == "auto" and env_world_size() > 1) or distributed is True
        self.rank, self.world_size = 0, 1
        self._ddp: nn.Module | None = None
        self._owns_group = False
        self._shards: dict[tuple[int, bool], Any] = {}

    # -- set-up --------------------------------------------------------------------------------

    def setup(self, stage: Stage) -> None:
        if self.distributed:
            self._join_group()
        if not self._placed:
            self.model.to(self.device)
            self._placed = True
        if stage == "fit":
            self._ensure_optimizer()
            if self.world_size > 1 and self._ddp is None:
                from torch.nn.parallel import DistributedDataParallel

                ids = [self.device.index] if self.device.type == "cuda" else None
                self._ddp = DistributedDataParallel(self.model, device_ids=ids)

    def _join_group(self) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            if self.device.type == "cuda":
                self.device = torch.device("cuda", env_local_rank())
                torch.cuda.set_device(self.device)
                self._placed = False
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self._owns_group = True
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def teardown(self) -> None:
        """Leave the process group if this task created it (a later phase joins again)."""
        if self._owns_group:
            import torch.distributed as dist

            self._ddp = None  # release DDP's reducer before its process group
            self._shards.clear()
            dist.barrier()  # no rank leaves while another still finishes a collective
            dist.destroy_process_group()
            self._owns_group = False
            self.rank, self.world_size = 0, 1

    # -- distributed ---------------------------------------------------------------------------

    def shard(self, data: Iterable[Any], epoch: int | None) -> Iterable[Any]:
        """Outside distributed runs, ``data`` itself.  Otherwise a DataLoader over the same
        dataset: training (``epoch`` given) through a DistributedSampler whose epoch is set
        here, evaluation through every ``world_size``-th sample, without padding."""
        if self.world_size == 1 or not isinstance(data, DataLoader):
            return data
        training = epoch is not None
        key = (id(data), training)
        if key not in self._shards:
            dataset = data.dataset
            sampler: Sampler[int]
            if training:
                seed = data.generator.initial_seed() if data.generator is not None else 0
                shuffle = isinstance(data.sampler, RandomSampler)
                sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed)
            else:
                sampler = _EveryNth(len(dataset), self.rank, self.world_size)  # type: ignore[arg-type]
            self._shards[key] = DataLoader(
                dataset, batch_size=data.batch_size, sampler=sampler,
                num_workers=data.num_workers, collate_fn=data.collate_fn,
                pin_memory=data.pin_memory, drop_last=data.drop_last,
            )
        loader: DataLoader[Any] = self._shards[key]
        if training:
            loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
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
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        if isinstance(value, torch.Tensor):
            summed = value.detach().clone()
            dist.all_reduce(summed)
            return summed
        number = torch.tensor(float(value), dtype=torch.float64, device=self.device)
        dist.all_reduce(number)
        return type(value)(number.item())

    def any_rank(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        import torch.distributed as dist

        vote = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX)
        return bool(vote.item())

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

    @staticmethod
    def _parts(batch: Any) -> tuple[Any, Any]:
        if isinstance(batch, (tuple, list)):  # first: the common case, and the cheap check
            if len(batch) == 2:
                return batch[0], batch[1]
            if len(batch) == 1:
                return batch[0], None
            raise ValueError(
                f"a batch tuple must be (inputs, targets) or (inputs,), got {len(batch)} items"
            )
        if isinstance(batch, Mapping):
            return batch["inputs"], batch.get("targets")
        return batch, None

    def _to_device(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.device != self.device:
            return value.to(self.device, non_blocking=True)
        return value

    def _inputs_targets(self, batch: Any) -> tuple[Any, Any]:
        inputs, targets = self._parts(batch)
        if self.example_input is None and isinstance(inputs, torch.Tensor):
            self.example_input = inputs[:2].detach().clone()  # moved to the CPU at export
        return self._to_device(inputs), self._to_device(targets)

    def batch_size(self, batch: Any) -> int:
        inputs, _ = self._parts(batch)
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

    def optimizer_step(self) -> None:
        optimizer = self._ensure_optimizer()
        scaling = self.scaler.is_enabled()
        if self.grad_clip_norm is not None:
            if scaling:
                self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        if scaling:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def zero_grad(self) -> None:
        self._ensure_optimizer().zero_grad(set_to_none=True)

    @torch.no_grad()
    def validation_step(self, batch: Any) -> dict[str, torch.Tensor]:
        inputs, targets = self._inputs_targets(batch)
        with self._autocast:
            outputs = self.model(inputs)
            results = {"loss": self.loss(outputs, targets).float()}
        for name, metric in self.metrics.items():
            results[name] = metric(outputs.float(), targets).float()
        return results

    @torch.no_grad()
    def predict_step(self, batch: Any) -> Any:
        inputs, _ = self._inputs_targets(batch)
        with self._autocast:
            outputs = self.model(inputs)
        return self.postprocess(outputs) if self.postprocess is not None else outputs

    def detach(self, value: Any) -> Any:
        return value.detach() if isinstance(value, torch.Tensor) else value

    def to_float(self, value: Any) -> float:
        return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)

    # -- state ---------------------------------------------------------------------------------

    def random_state(self, data: Iterable[Any]) -> dict[str, Any]:
        """Python's, NumPy's and torch's generators (CUDA's too, once CUDA is in use), and
        the generators that ``data`` (a DataLoader) shuffles and seeds its workers with."""
        state = python_numpy_random_state()
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        state["data"] = [generator.get_state() for generator in _data_generators(data)]
        return state

    def set_random_state(self, state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
        set_python_numpy_random_state(state)
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        if data is None:
            return
        generators = _data_generators(data)
        if len(generators) != len(state["data"]):
            raise ValueError(
                f"the checkpoint's data had {len(state['data'])} random generators, this data "
                f"has {len(generators)}: resume with the same kind of data loader"
            )
        for generator, generator_state in zip(generators, state["data"], strict=True):
            generator.set_state(generator_state)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.model.state_dict()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self._ensure_optimizer().load_state_dict(state["optimizer"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])

    # -- export --------------------------------------------------------------------------------

    def export(self, format: str, path: Path) -> Path:
        """Write the model as ``format`` and check the artifact: it is loaded back and its
        outputs on the example input must match the model's (else :class:`ExportError`)."""
        if format not in EXPORT_SUFFIXES:
            raise ValueError(
                f"unknown export format {format!r}; available: {', '.join(EXPORT_SUFFIXES)}"
            )
        if self.example_input is None:
            raise ExportError("export needs an example input: pass example_input= to TorchTask")
        target = path if path.suffix == EXPORT_SUFFIXES[format] else path.with_suffix(
            EXPORT_SUFFIXES[format]
        )
        model = self.model.to("cpu").eval()
        example = self.example_input.to("cpu")
        with torch.no_grad():
            expected = model(example)
            writer, reader = _EXPORTERS[format]
            try:
                with warnings.catch_warnings():
                    # torch's exporters warn about their own internals; nothing a user can act on
                    warnings.simplefilter("ignore", FutureWarning)
                    writer(model, example, target)
            except Exception as error:
                raise ExportError(
                    f"{format} export failed: {type(error).__name__}: {error}"
                ) from error
            actual = reader(target, example)
        self.model.to(self.device)
        self._placed = True
        if not torch.allclose(actual, expected, rtol=1e-4, atol=1e-5):
            difference = float((actual - expected).abs().max())
            raise ExportError(
                f"{format} export at {target} does not reproduce the model: "
                f"largest difference {difference:.3g}"
            )
        return target


class _EveryNth(Sampler[int]):
    """Indices ``rank, rank + n, rank + 2n, ...``: an evaluation shard, no sample repeated."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _data_generators(data: Any) -> list[torch.Generator]:
    """The distinct torch generators a DataLoader draws from (its own and its sampler's)."""
    found: list[torch.Generator] = []
    holders = [data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None)]
    holders.append(getattr(holders[-1], "sampler", None))
    for holder in holders:
        generator = getattr(holder, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _batch_dimension() -> dict[int, Any]:
    return {0: torch.export.Dim.DYNAMIC}


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.jit.trace(model, example).save(str(path))


def _read_torchscript(path: Path, example: torch.Tensor) -> torch.Tensor:
    result: torch.Tensor = torch.jit.load(str(path), map_location="cpu")(example)
    return result


def _write_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=(_batch_dimension(),))
    torch.export.save(program, str(path))


def _read_pt2(path: Path, example: torch.Tensor) -> torch.Tensor:
    result: torch.Tensor = torch.export.load(str(path)).module()(example)
    return result


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ExportError(
            "ONNX export needs the onnx extra: pip install 'hookline[onnx]'"
        ) from error
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        torch.onnx.export(
            model, (example,), str(path), dynamo=True, verbose=False,
            input_names=["input"], output_names=["output"],
            dynamic_shapes=(_batch_dimension(),),
        )
    finally:
        quiet.setLevel(level)


def _read_onnx(path: Path, example: torch.Tensor) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError as error:
        raise ExportError("checking an ONNX export needs onnxruntime (the onnx extra)") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"input": example.numpy()})
    return torch.from_numpy(output)


_EXPORTERS: dict[
    str,
    tuple[
        Callable[[nn.Module, torch.Tensor, Path], None],
        Callable[[Path, torch.Tensor], torch.Tensor],
    ],
] = {
    "torchscript": (_write_torchscript, _read_torchscript),
    "pt2": (_write_pt2, _read_pt2),
    "onnx": (_write_onnx, _read_onnx),
}
