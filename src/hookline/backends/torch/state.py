"""A torch task's state outside the loop: gradients, random generators and checkpoint
payloads (shared by :class:`~hookline.backends.torch.TorchTask` and
:class:`~hookline.backends.torch.host.TorchHostState`)."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from hookline.backends.host_random import python_numpy_random_state, set_python_numpy_random_state
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
