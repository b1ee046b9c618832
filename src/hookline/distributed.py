"""This process's place in a distributed run, read from the environment that launchers such as
torchrun set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``,
``TORCHELASTIC_RESTART_COUNT``); no framework is imported here.

Plugins run on every rank unless they set ``rank_zero_only = True`` (as the built-ins that
write files or print do): on the other ranks such a plugin still declares its settings, but
none of its other hooks is called, at no cost.
"""

from __future__ import annotations

import os

from hookline.errors import UserError


class LaunchError(UserError, RuntimeError):
    """The launcher's environment does not say how the processes of a run meet."""


def env_rank() -> int:
    """This process's global rank (0 outside a distributed launch)."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    """The number of processes in the run (1 outside a distributed launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_local_rank() -> int:
    """This process's rank on its machine (picks its GPU)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def env_local_world_size() -> int:
    """The number of processes on this machine (1 outside a distributed launch)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def env_restart_count() -> int:
    """How many times torchrun has restarted this run's processes (``--max-restarts``): 0 on
    the first attempt, and outside torchrun."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def elastic_attempt() -> int | None:
    """The attempt of a run that torchrun (torchelastic) launched: 0 for the first, 1 after a
    restart, ...; ``None`` for processes that another launcher started."""
    count = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    return None if count is None else int(count)


#: The coordinator of a second runtime (JAX's) listens this many ports above ``MASTER_PORT``,
#: which torchrun's own store holds.
COORDINATOR_PORT_OFFSET = 1


def coordinator_address() -> str:
    """``host:port`` where the processes of a run that is not torch's own (JAX's distributed
    runtime) meet: ``MASTER_ADDR`` and ``MASTER_PORT`` + 1, as torchrun sets them (its store
    holds ``MASTER_PORT`` itself).

    :raises LaunchError: naming the variable that is missing or is no port number.
    """
    address, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not address or not port:
        missing = "MASTER_ADDR" if not address else "MASTER_PORT"
        raise LaunchError(
            f"WORLD_SIZE={env_world_size()} but {missing} is not set: launch the processes "
            "with torchrun (or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each)"
        )
    if not port.isdigit() or not 0 < int(port) + COORDINATOR_PORT_OFFSET < 65536:
        raise LaunchError(f"MASTER_PORT={port!r} is not a port number below 65535")
    return f"{address}:{int(port) + COORDINATOR_PORT_OFFSET}"
