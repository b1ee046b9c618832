"""A torch task's state outside the loop: gradients, random generators and checkpoint
payloads (shared by :class:`~hookline.backends.torch.TorchTask` and
:class:`~hookline.backends.torch.host.TorchHostState`)."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from typing import IO, Any

import torch

from hookline.backends.host_random import python_numpy_random_state, set_python_numpy_random_state
from hookline.backends.host_tree import copy_tree
from hookline.errors import CheckpointError, first_line


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each parameter's gradient by name (those that have one), without a copy."""
    return {
        name: value.grad for name, value in model.named_parameters() if value.grad is not None
    }


def gradient_norm(model: torch.nn.Module) -> torch.Tensor:
    """The global L2 norm of the gradients, as ``clip_grad_norm_`` computes it, on their device
    (0 when no parameter has a gradient)."""
    grads = [value.grad for value in model.parameters() if value.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


def random_state(data: Iterable[Any]) -> dict[str, Any]:
    """Python's, NumPy's and torch's generators (CUDA's too, once CUDA is in use), and the
    generators that ``data`` (a DataLoader) shuffles and seeds its workers with."""
    state = python_numpy_random_state()
    state["torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    state["data"] = [generator.get_state() for generator in _data_generators(data)]
    return state


def set_random_state(state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
    """Put back what :func:`random_state` returned; with ``data=None`` only the global
    generators."""
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


def save_payload(checkpoint: Mapping[str, Any]) -> bytes:
    """``checkpoint`` as torch's zip format."""
    buffer = io.BytesIO()
    torch.save(dict(checkpoint), buffer)
    return buffer.getvalue()


def write_payload(checkpoint: Mapping[str, Any], file: IO[bytes]) -> None:
    """Write :func:`save_payload`'s bytes to ``file``, streamed: torch writes each storage
    straight from the tensor's memory, with no copy of the whole payload in between (a valid
    zip, CRC-32 records included, that any zip reader checks)."""
    torch.save(dict(checkpoint), file)


def host_copy(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with every tensor copied to CPU memory that nothing else uses, and its
    containers and other values copied too: a background thread can serialise the copy while
    training changes the model.

    Tensors that share a storage (tied weights, views) share one copy, as ``torch.save`` would
    store them.  CUDA tensors are copied into pinned memory without blocking, then their
    streams are synchronized once; CPU tensors are cloned.
    """
    copier = _HostCopier()
    copied: dict[str, Any] = copy_tree(dict(checkpoint), copier.copy)
    copier.wait()
    return copied


class _HostCopier:
    """Copies tensors to the host, one copy per storage, and waits for the transfers."""

    def __init__(self) -> None:
        self._storages: dict[tuple[torch.device, int], torch.UntypedStorage] = {}
        self._devices: set[torch.device] = set()

    def copy(self, leaf: Any) -> torch.Tensor | None:
        if not isinstance(leaf, torch.Tensor):
            return None
        value: torch.Tensor = leaf.detach()
        if type(value) is not torch.Tensor or value.layout != torch.strided or (
            value.is_quantized or value.device.type not in ("cpu", "cuda")
        ):  # a subclass, a sparse or quantized tensor, another device: torch's own copy
            return value.to("cpu", copy=True)
        storage = value.untyped_storage()
        key = (value.device, storage.data_ptr())
        copied = self._storages.get(key) if storage.nbytes() else None
        if copied is None:
            pinned = value.device.type == "cuda"
            source = torch.empty(0, dtype=torch.uint8, device=value.device).set_(storage)
            target = torch.empty(source.shape, dtype=torch.uint8, pin_memory=pinned)
            target.copy_(source, non_blocking=pinned)
            copied = target.untyped_storage()
            if pinned:
                self._devices.add(value.device)
            if storage.nbytes():
                self._storages[key] = copied
        return torch.empty(0, dtype=value.dtype).set_(
            copied, value.storage_offset(), value.size(), value.stride()
        )

    def wait(self) -> None:
        """Block until every transfer to the host has landed."""
        for device in self._devices:
            torch.cuda.current_stream(device).synchronize()


def load_payload(data: bytes, source: str) -> dict[str, Any]:
    """Load :func:`save_payload`'s bytes with ``torch.load(weights_only=True)`` on the CPU.

    :raises CheckpointError: naming ``source`` when the data is corrupt or holds objects whose
        unpickling could run code (refused, never run).
    """
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses a class or function to import as an "unsupported GLOBAL"
        unsafe = [line.strip() for line in str(error).splitlines() if "global" in line.lower()]
        if unsafe:
            raise CheckpointError(
                f"checkpoint {source!r} holds objects that need arbitrary unpickling "
                f"({unsafe[0]}); refused: hookline never runs code from a checkpoint"
            ) from None
        raise CheckpointError(
            f"checkpoint {source!r} is truncated or corrupt: not a torch payload"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        first = first_line(error, type(error).__name__)
        raise CheckpointError(f"checkpoint {source!r} is truncated or corrupt: {first}") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"checkpoint {source!r} holds no hookline checkpoint")
    return loaded


class TorchStateMethods:
    """The state-part methods that :class:`~hookline.backends.torch.TorchTask` and
    :class:`~hookline.backends.torch.host.TorchHostState` share: gradients and checkpoint
    payloads of ``self.model``, a torch module."""

    checkpoint_format = "torch"
    model: torch.nn.Module

    def gradients(self) -> dict[str, Any]:
        """Each parameter's ``.grad`` by name, without a copy (see :func:`gradients`)."""
        return gradients(self.model)

    def gradient_norm(self) -> torch.Tensor:
        """The global L2 norm of the gradients, on their device (no host sync)."""
        return gradient_norm(self.model)

    def save_checkpoint(self, checkpoint: Mapping[str, Any]) -> bytes:
        return save_payload(checkpoint)

    def write_checkpoint(self, checkpoint: Mapping[str, Any], file: IO[bytes]) -> None:
        """:meth:`save_checkpoint`'s bytes, streamed into ``file``."""
        write_payload(checkpoint, file)

    def host_copy(self, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        """``checkpoint`` with every tensor copied to CPU memory (pinned, without blocking,
        from CUDA), for a background write (see :func:`host_copy`)."""
        return host_copy(checkpoint)

    def load_checkpoint(self, data: bytes, source: str) -> dict[str, Any]:
        """Loads with ``torch.load(weights_only=True)``: nothing in the file is run."""
        return load_payload(data, source)

