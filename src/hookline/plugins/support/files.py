"""File helpers for plugins that write: atomic writes and numbered run directories."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any], *, durable: bool = True) -> Path:
    """Write a file so that a crash at any instant leaves either the old file or the new one.

    ``write`` receives a binary file in the same folder, which is then renamed over ``path``.
    The rename alone covers a crashed or killed process.  ``durable`` (for checkpoints) also
    fsyncs the file before the rename and the folder after it, so that the new file survives
    a power loss or an OS crash too.  That costs two disk flushes per write; the run's other
    files (metrics, plots, summaries) do without, since losing their latest records to a power
    loss does not stop the run from resuming.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path


def next_run_dir(parent: Path, name: str) -> Path:
    """The first free directory among ``parent/name``, ``parent/name2``, ``parent/name3``, ..."""
    pattern = re.compile(rf"^{re.escape(name)}(\d*)$")
    taken = [
        int(match.group(1) or 1)
        for child in (parent.iterdir() if parent.is_dir() else ())
        if (match := pattern.match(child.name))
    ]
    number = max(taken, default=0) + 1
    return parent / (name if number == 1 else f"{name}{number}")
