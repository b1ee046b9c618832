"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): every process writes its own
shard of the model and optimizer into one directory, and any number of processes reads it back.

A checkpoint directory holds::

    __0_0.distcp, __1_0.distcp, ...   DCP's shards: tensors only (model, optimizer state)
    .metadata                         DCP's index of the shards
    state.msgpack                     rank zero: progress (with each rank's random state),
                                      metrics, plugin state, the optimizer's non-tensor values
    hookline.json                     the header (format, settings, a digest of every file),
                                      written by the checkpoint plugin once the rest is complete

Nothing in it is unpickled with a general unpickler: ``.metadata`` (a pickle) is read by
:class:`SafeReader` with an unpickler that builds DCP's own metadata classes and nothing else
(a ``__reduce__`` that would run code is refused, naming the file), tensors are read by
``torch.load(weights_only=True)``, DCP's pickled non-tensor values are never written (and
refused when read), and ``state.msgpack`` is MessagePack (:mod:`hookline.backends.msgpack_payload`),
with tensors as tagged raw arrays.

Resuming on another number of processes: DCP reshards the tensors; each rank takes the random
state of the rank of the same number (rank zero's when the writer had fewer), and the epoch's
running losses go to rank zero whole, so that the epoch's mean loss is the same.
"""

from __future__ import annotations

import os
import pickle
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from hookline.backends import msgpack_payload
from hookline.errors import CheckpointError, first_line

#: The file rank zero writes next to the shards.
STATE_FILE = "state.msgpack"
#: The payload format a sharded torch checkpoint's header names.
FORMAT = "torch-dcp"
_TENSOR = "__torch_tensor__"

# -- a restricted reader for DCP's .metadata ---------------------------------------------------

#: The only classes and functions ``.metadata`` may name: DCP's metadata records, torch's
#: sizes, dtypes and layouts, and a path.
_ALLOWED: dict[str, frozenset[str]] = {
    "torch.distributed.checkpoint.metadata": frozenset({
        "Metadata", "MetadataIndex", "ChunkStorageMetadata", "TensorStorageMetadata",
        "BytesStorageMetadata", "TensorProperties", "StorageMeta", "_MEM_FORMAT_ENCODING",
    }),
    "torch.distributed.checkpoint.filesystem": frozenset({"_StorageInfo"}),
    "torch.serialization": frozenset({"_get_layout"}),
    "torch": frozenset({"Size"}),
    "pathlib": frozenset({"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"}),
    "collections": frozenset({"OrderedDict"}),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name}, which is not DCP metadata")


def read_metadata(path: Path) -> Any:
    """DCP's ``.metadata`` at ``path``, built by a restricted unpickler.

    :raises CheckpointError: naming the file when it names anything but DCP's metadata (code
        that would run is refused, never run) or is not readable.
    """
    from torch.distributed.checkpoint.metadata import Metadata

    try:
        with open(path, "rb") as file:
            metadata = _MetadataUnpickler(file).load()
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint file {str(path)!r} names {first_line(error)}; refused: hookline never "
            "runs code from a checkpoint"
        ) from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is truncated or corrupt: {type(error).__name__}"
        ) from None
    if not isinstance(metadata, Metadata):
        raise CheckpointError(f"checkpoint file {str(path)!r} holds no DCP metadata")
    return metadata


def _safe_reader(directory: Path) -> Any:
    """DCP's file-system reader with the restricted ``.metadata`` reader, refusing pickled
    (non-tensor) values."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.planner import LoadItemType

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            metadata = read_metadata(directory / ".metadata")
            from torch.distributed.checkpoint.metadata import StorageMeta

            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

        def read_data(self, plan: Any, planner: Any) -> Any:
            for item in plan.items:
                if item.type == LoadItemType.BYTE_IO:
                    raise CheckpointError(
                        f"checkpoint {str(directory)!r} holds a pickled value "
                        f"({item.storage_index.fqn}); refused: hookline never unpickles one"
                    )
            return super().read_data(plan, planner)

    return SafeReader(directory)


# -- plain data -------------------------------------------------------------------------------


def _to_plain(value: Any) -> Any:
    """Tensors tagged as arrays, tuples as lists: what MessagePack stores."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            return {_TENSOR: tensor.float().numpy(), "dtype": "bfloat16"}
        return {_TENSOR: tensor.numpy()}
    if isinstance(value, Mapping):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if _TENSOR in value:
            tensor = torch.from_numpy(np.array(value[_TENSOR]))
            return tensor.to(torch.bfloat16) if value.get("dtype") == "bfloat16" else tensor
        return {key: _from_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_plain(item) for item in value]
    return value


def _like(value: Any, target: Any) -> Any:
    """``value`` read back from MessagePack, with the tuples of ``target`` (a param group's
    ``betas``) as tuples again."""
    if isinstance(target, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(target, Mapping) and isinstance(value, Mapping):
        return {key: _like(item, target.get(key)) for key, item in value.items()}
    if isinstance(target, list) and isinstance(value, list) and len(target) == len(value):
        return [_like(item, other) for item, other in zip(value, target, strict=True)]
    return value


def split_tensors(tree: Any, path: tuple[Any, ...] = ()) -> tuple[Any, list[list[Any]]]:
    """``tree`` (nested dicts) as ``(tensors, extras)``: the same dicts holding only the
    tensors, and every other leaf as ``[path, value]`` (DCP would pickle those)."""
    if isinstance(tree, Mapping):
        tensors: dict[Any, Any] = {}
        extras: list[list[Any]] = []
        for key, item in tree.items():
            part, more = split_tensors(item, (*path, key))
            if part is not None:
                tensors[key] = part
            extras.extend(more)
        return tensors, extras
    if isinstance(tree, torch.Tensor):
        return tree, []
    return None, [[list(path), tree]]


def _merge(tree: dict[Any, Any], extras: list[list[Any]], like: Mapping[Any, Any]) -> None:
    for path, value in extras:
        node, target = tree, like
        for key in path[:-1]:
            node = node.setdefault(key, {})
            target = target.get(key, {}) if isinstance(target, Mapping) else {}
        node[path[-1]] = _like(value, target.get(path[-1]) if isinstance(target, Mapping) else None)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# -- saving -----------------------------------------------------------------------------------


class ShardedSaver:
    """Writes sharded checkpoints, synchronously or in the background (at most one in flight:
    a new save, :meth:`wait` and the end of training wait for the previous one).

    Asynchronous saves across ranks go through a gloo group of every rank of their own (DCP's
    ``async_save`` fails on the default group), created on the first one; it ends with the
    default group, which a sharded model keeps until the process exits.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._async_group: Any = None

    def wait(self) -> None:
        """Wait for the save in flight, if any; re-raise its failure."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            if isinstance(error, CheckpointError):
                raise error
            raise CheckpointError(
                f"a checkpoint could not be written: {type(error).__name__}: {first_line(error)}"
            ) from None

    @property
    def in_flight(self) -> bool:
        """Whether a background save has not finished yet."""
        return self._thread is not None and self._thread.is_alive()

    def save(
        self, directory: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer | None,
        checkpoint: Mapping[str, Any], finish: Callable[[Path], None] | None,
        *, asynchronous: bool = False,
    ) -> Path:
        """Write ``checkpoint`` (``task``'s model and optimizer, and the rest) into a new
        directory: rank zero's ``directory`` (created here; the other ranks' value is ignored).
        Every rank calls it.  When every file is written, ``finish(directory)`` runs on rank
        zero (in the background for an asynchronous save).  Returns the directory."""
        from torch.distributed.checkpoint.filesystem import FileSystemWriter
        from torch.distributed.checkpoint.state_dict import get_state_dict
        from torch.distributed.checkpoint.state_dict_saver import async_save, save

        self.wait()  # at most one in flight, on every rank alike
        rank, world = _rank_world()
        directory = self._agree_on_directory(directory, rank, world)
        model_state, optimizer_state = (
            get_state_dict(model, optimizer) if optimizer is not None
            else (get_state_dict(model, [])[0], {})
        )
        tensors, extras = split_tensors({"model": model_state, "optimizer": optimizer_state})
        rest = {key: value for key, value in checkpoint.items() if key != "task"}
        progress = [rest.pop("progress", {})]
        if world > 1:
            gathered: list[Any] = [None] * world if rank == 0 else []
            dist.gather_object(progress[0], gathered if rank == 0 else None, dst=0)
            progress = gathered
        state = None
        if rank == 0:  # plain data, converted now: training may change it once this returns
            state = msgpack_payload.save_payload(_to_plain({
                **rest, "progress": progress, "task_extras": extras, "world_size": world,
            }))
        writer = FileSystemWriter(directory, sync_files=True)

        def complete() -> None:
            if rank == 0:
                assert state is not None
                _write_file(directory / STATE_FILE, state)
                if finish is not None:
                    finish(directory)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "assuming ... a single process" without a group
            if not asynchronous:
                save(tensors, storage_writer=writer, no_dist=world == 1)
                complete()
                return directory
            if world > 1 and self._async_group is None:
                self._async_group = dist.new_group(backend="gloo")
            future: Any = async_save(
                tensors, storage_writer=writer, process_group=self._async_group,
                no_dist=world == 1,
            )

        def background() -> None:
            try:
                result = getattr(future, "upload_completion", future)
                result.result()
                complete()
            except BaseException as error:  # DCP's CheckpointException is one
                self._error = error

        self._thread = threading.Thread(target=background, name="hookline-dcp-save", daemon=True)
        self._thread.start()
        return directory

    def _agree_on_directory(self, directory: Path | None, rank: int, world: int) -> Path:
        """Rank zero's directory, created by rank zero before any rank writes into it."""
        if rank == 0:
            if directory is None:
                raise ValueError("rank zero needs a directory to save into")
            directory.mkdir(parents=True)
        if world == 1:
            assert directory is not None
            return directory
        shared = [str(directory) if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        return Path(str(shared[0]))


# -- loading ----------------------------------------------------------------------------------


def read_state(directory: Path) -> dict[str, Any]:
    """``state.msgpack`` of a sharded checkpoint, tensors as torch tensors again."""
    path = directory / STATE_FILE
    try:
        data = path.read_bytes()
    except OSError:
        raise CheckpointError(f"checkpoint {str(directory)!r} has no {STATE_FILE}") from None
    state: dict[str, Any] = _from_plain(msgpack_payload.load_payload(data, str(path)))
    if not isinstance(state.get("progress"), list) or not state["progress"]:
        raise CheckpointError(f"checkpoint file {str(path)!r} holds no progress")
    return state


def progress_for(saved: list[dict[str, Any]], rank: int, world: int) -> dict[str, Any]:
    """This rank's progress out of each saved rank's: its own when the number of processes is
    the same; otherwise rank ``rank``'s random state (rank zero's beyond the writer's ranks),
    and the epoch's running losses all on rank zero (zero elsewhere)."""
    if len(saved) == world:
        return dict(saved[rank])
    progress = dict(saved[min(rank, len(saved) - 1)])
    for key in ("epoch_loss", "interval_loss"):
        losses: list[Mapping[str, Any]] = [
            entry[key] for entry in saved if isinstance(entry.get(key), Mapping)
        ]
        if not losses:
            continue
        if rank != 0:
            progress[key] = {"total": None, "count": 0}
            continue
        totals = [loss["total"] for loss in losses if loss.get("total") is not None]
        total: Any = None
        for value in totals:
            total = value if total is None else total + value
        progress[key] = {"total": total, "count": sum(int(loss["count"]) for loss in losses)}
    return progress


def load_checkpoint(directory: Path, source: str) -> dict[str, Any]:
    """The plain part of a sharded checkpoint for this rank (``progress``, ``metrics``,
    ``plugins``, ...), with ``task`` naming the directory: the tensors are read into the
    model and optimizer by :func:`load_into` (or :func:`load_model`)."""
    state = read_state(directory)
    rank, world = _rank_world()
    saved = state.pop("progress")
    extras = state.pop("task_extras", [])
    state.pop("world_size", None)
    return {
        **state, "progress": progress_for(saved, rank, world),
        "task": {"sharded": str(directory), "extras": extras, "source": source},
    }


def _dcp_load(tensors: Any, directory: Path) -> None:
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict_loader import load

    read_metadata(directory / ".metadata")  # refused here, in one line, before DCP reads it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load(tensors, storage_reader=_safe_reader(directory), no_dist=_rank_world()[1] == 1)
    except CheckpointException as error:  # a BaseException: one line, naming the directory
        causes = [
            cause for failures in getattr(error, "failures", {}).values()
            for cause in ([failures] if isinstance(failures, BaseException) else [])
        ]
        user = next((cause for cause in causes if isinstance(cause, CheckpointError)), None)
        if user is not None:
            raise user from None
        raise CheckpointError(
            f"checkpoint {str(directory)!r} does not fit this model: {first_line(error)}"
        ) from None
    except (RuntimeError, KeyError, ValueError, AssertionError) as error:
        raise CheckpointError(
            f"checkpoint {str(directory)!r} does not fit this model: "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None


def load_into(
    directory: Path, extras: list[list[Any]], model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
) -> None:
    """Read the checkpoint's model (and optimizer) into ``model`` and ``optimizer``, however
    they are sharded now (every rank calls it)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    if optimizer is None:
        model_state = get_state_dict(model, [])[0]
        optimizer_state: dict[str, Any] = {}
    else:
        model_state, optimizer_state = get_state_dict(model, optimizer)
    target = {"model": model_state, "optimizer": optimizer_state}
    tensors, _ = split_tensors(target)
    if optimizer is None:
        tensors.pop("optimizer", None)
    _dcp_load(tensors, directory)
    wanted = [entry for entry in extras if optimizer is not None or entry[0][0] != "optimizer"]
    loaded = dict(tensors)
    _merge(loaded, wanted, target)
    if optimizer is None:
        set_state_dict(model, [], model_state_dict=loaded["model"], optim_state_dict={})
    else:
        set_state_dict(
            model, optimizer, model_state_dict=loaded["model"],
            optim_state_dict=loaded.get("optimizer", {}),
        )


def load_model(directory: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint's whole model as a plain state dict on the CPU, shaped like ``model``'s
    (a single process reads every shard)."""
    target = {"model": {name: value.detach().clone() for name, value in model.state_dict().items()}}
    _dcp_load(target, directory)
    state: dict[str, torch.Tensor] = target["model"]
    return state
