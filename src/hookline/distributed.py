"""This process's place in a distributed run, read from the environment that launchers such as
torchrun set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); no framework is imported here.

Plugins run on every rank unless they set ``rank_zero_only = True`` (as the built-ins that
write files or print do): on the other ranks such a plugin still declares its settings, but
none of its other hooks is called, at no cost.
"""

from __future__ import annotations

import os


def env_rank() -> int:
    """This process's global rank (0 outside a distributed launch)."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    """The number of processes in the run (1 outside a distributed launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_local_rank() -> int:
    """This process's rank on its machine (picks its GPU)."""
    return int(os.environ.get("LOCAL_RANK", "0"))
