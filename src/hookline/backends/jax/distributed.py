"""JAX across processes: its distributed runtime, started from the launcher's environment, and
the global arrays a multi-process :class:`~hookline.backends.jax.JaxTask` trains on.

Launched by torchrun (``torchrun --nproc_per_node=2 -m hookline train recipe=digits-jax``),
each process calls :func:`initialize_distributed` before any JAX computation, so before the
model is built (the digits-jax recipe does; a script does it first thing).  The processes
meet at ``MASTER_ADDR`` and ``MASTER_PORT`` + 1 (torchrun's own store holds ``MASTER_PORT``);
on CPU, JAX's collectives go through gloo.

A :class:`Processes` holds what a task needs then: a mesh over every device of every
process, the state replicated on all of them (``NamedSharding(mesh, P())``), each training
batch made one global array from every process's share
(:func:`jax.make_array_from_process_local_data`: a local NumPy batch passed to a replicated
step would be taken for the same value everywhere, and the replicas would silently diverge),
and the sums over processes that the engine's metrics and stop votes need.

A failure ends every process within a bounded time: a process that dies is declared dead by
the runtime's heartbeat after ``heartbeat_timeout_s`` (JAX's default is 100 s; hookline's 10 s),
and then the runtime ends every other process; a peer's collective fails at once when the
dead process's connections close.  A process that raises instead waits, on its way out, at
the runtime's shutdown barrier, which the others (stuck in a collective) never reach: after
``shutdown_timeout_s`` (hookline's 20 s) the runtime ends them all.  Processes that finish
normally meet at a barrier in ``JaxTask.teardown``, so that the shutdown barrier never waits
for rank zero's last files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from hookline.distributed import (
    LaunchError,
    coordinator_address,
    env_local_rank,
    env_local_world_size,
    env_rank,
    env_world_size,
)

#: Seconds without a heartbeat after which the runtime declares a process dead and ends the
#: others (JAX's default: 100).
HEARTBEAT_TIMEOUT_S = 10
#: Seconds the processes wait for each other at the runtime's shutdown (JAX's default: 300).
SHUTDOWN_TIMEOUT_S = 20
#: Seconds the processes wait for each other to start.
INIT_TIMEOUT_S = 120


def initialize_distributed(
    *,
    heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S,
    shutdown_timeout_s: int = SHUTDOWN_TIMEOUT_S,
    init_timeout_s: int = INIT_TIMEOUT_S,
) -> bool:
    """Start JAX's distributed runtime when this process is one of several (``WORLD_SIZE`` >
    1, as torchrun sets it); nothing otherwise, or when it runs already.  Call it before any
    JAX computation: before the model is built.

    The coordinator is ``MASTER_ADDR:MASTER_PORT+1``; the process id is ``RANK``.  With
    several processes on one machine (``LOCAL_WORLD_SIZE`` > 1) each takes the accelerator
    of its ``LOCAL_RANK``.  Returns whether the run has several processes.

    :raises LaunchError: (one line) when the environment does not say where the processes
        meet, or when JAX has computed something already in this process.
    """
    world = env_world_size()
    if world <= 1:
        return False
    if jax.distributed.is_initialized():
        return True
    local = [env_local_rank()] if env_local_world_size() > 1 else None
    try:
        jax.distributed.initialize(
            coordinator_address(), num_processes=world, process_id=env_rank(),
            local_device_ids=local, initialization_timeout=init_timeout_s,
            heartbeat_timeout_seconds=heartbeat_timeout_s,
            shutdown_timeout_seconds=shutdown_timeout_s,
        )
    except RuntimeError as error:
        if "must be called before" not in str(error):
            raise
        raise LaunchError(
            "JAX's distributed runtime must start before any JAX computation: call "
            "hookline.backends.jax.initialize_distributed() before the model is built"
        ) from None
    return True


class ProcessFailure(RuntimeError):
    """A collective across the processes failed: another process has died or left."""


def running_processes() -> int:
    """The number of processes of the JAX runtime (1 when it is not distributed)."""
    return jax.process_count() if jax.distributed.is_initialized() else 1


class Processes:
    """The processes of a multi-process task, as one program: a mesh over every device, the
    shardings of the state (replicated) and of training batches (split along the first axis
    over every device), and sums over processes computed on the devices.

    Every process must make the same calls in the same order: each is a collective, or a
    computation over every device.
    """

    def __init__(self) -> None:
        self.rank, self.world_size = jax.process_index(), jax.process_count()
        self.mesh = Mesh(np.array(jax.devices()), ("data",))
        #: The state's sharding: a whole copy on every device.
        self.replicated = NamedSharding(self.mesh, P())
        #: A global batch's sharding: its rows split over the devices, in process order.
        self.rows = NamedSharding(self.mesh, P("data"))
        self._local_devices = jax.local_device_count()
        self._sum: Callable[[jax.Array], jax.Array] = jax.jit(
            partial_sum, out_shardings=self.replicated
        )

    def replicate(self, leaves: list[Any], *, from_rank_zero: bool = False) -> list[Any]:
        """``leaves`` (this process's arrays, or global ones) as global arrays replicated on
        every device; with ``from_rank_zero``, the values of process zero everywhere (as
        DistributedDataParallel broadcasts the initial weights)."""
        keys = {index: jax.random.key_impl(leaf) for index, leaf in enumerate(leaves)
                if is_key(leaf)}
        host = [
            np.asarray(jax.device_get(jax.random.key_data(leaf) if index in keys else leaf))
            for index, leaf in enumerate(leaves)
        ]
        if from_rank_zero:
            host = list(multihost_utils.broadcast_one_to_all(host))
        placed = [jax.make_array_from_process_local_data(self.replicated, value)
                  for value in host]
        return [
            jax.random.wrap_key_data(value, impl=keys[index]) if index in keys else value
            for index, value in enumerate(placed)
        ]

    def global_rows(self, tree: Any) -> Any:
        """Each array of ``tree`` (this process's share of a batch) as the global batch of
        every process's shares, split over the devices in process order.  Every process must
        hold as many rows."""
        if tree is None:
            return None
        return jax.tree_util.tree_map(
            lambda value: jax.make_array_from_process_local_data(self.rows, np.asarray(value)),
            tree,
        )

    def global_copy(self, tree: Any) -> Any:
        """Each array of ``tree`` (the same on every process: an evaluation batch) as a
        global array replicated on every device."""
        if tree is None:
            return None
        return jax.tree_util.tree_map(
            lambda value: jax.make_array_from_process_local_data(
                self.replicated, np.asarray(value)
            ),
            tree,
        )

    @contextlib.contextmanager
    def collective(self) -> Iterator[None]:
        """Turn the runtime error of a collective that another process left into a
        :class:`ProcessFailure` saying so."""
        try:
            yield
        except jax.errors.JaxRuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise ProcessFailure(
                f"process {self.rank} of {self.world_size}: a collective failed, another "
                f"process has probably died (see its output): {first}"
            ) from error

    def sum(self, value: Any) -> Any:
        """``value`` (a number or an array) summed over the processes: a Python number for a
        number, else a NumPy array (the sum reaches the host: read at log intervals).

        :raises ProcessFailure: when another process is gone.
        """
        with self.collective():
            host = np.asarray(jax.device_get(value))
            dtype = np.int32 if host.dtype.kind in "biu" else np.float32  # JAX's default widths
            local = np.zeros((self._local_devices, *host.shape), dtype)
            local[0] = host
            stacked = jax.make_array_from_process_local_data(self.rows, local)
            total = np.asarray(self._sum(stacked))
        if isinstance(value, bool | int):
            return int(total)
        if isinstance(value, float):
            return float(total)
        return total

    def barrier(self, name: str) -> None:
        """Wait until every process gets here (a collective: every process must call it).

        :raises ProcessFailure: when another process is gone.
        """
        with self.collective():
            multihost_utils.sync_global_devices(name)


def partial_sum(stacked: jax.Array) -> jax.Array:
    """The sum of the rows of ``stacked`` (one row per device)."""
    return jnp.sum(stacked, axis=0)


def is_key(leaf: Any) -> bool:
    """Whether ``leaf`` is a typed PRNG key array."""
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def local_copy(leaf: Any) -> Any:
    """This process's copy of a replicated global array, as an array on its own device
    (anything else as it is)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return leaf.addressable_data(0)
    return leaf
