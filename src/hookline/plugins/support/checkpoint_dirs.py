"""Writing sharded checkpoints (:mod:`hookline.engine.checkpoint_dir`): the header with a
digest of every file, and the atomic replacement of a checkpoint directory.

A directory cannot be replaced atomically with a rename, so a checkpoint name
(``weights/last``) is a symbolic link to a directory written complete first
(``weights/.ckpt-s120-3f9c01``): a new link is made under a temporary name, then renamed over
the old one.  A crash at any instant leaves the link pointing at the previous complete
checkpoint, or at the new one.  Several names (``last``, ``best``, a top-k name) may point at
one directory; a directory no name points at is removed (:func:`collect`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hookline.engine.checkpoint_dir import HEADER, VERSION, file_digest

#: The prefix of the directories checkpoint names link to.
PREFIX = ".ckpt-"


def staging_dir(weights: Path, step: int) -> Path:
    """A new, unique directory name for the checkpoint of optimizer step ``step``."""
    return weights / f"{PREFIX}s{step}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_header(directory: Path, format: str, args: Mapping[str, Any]) -> None:
    """Write ``hookline.json`` into the complete ``directory``: the format, the run's settings
    and the SHA-256 of every file in it (fsynced, as the files are)."""
    files = {
        path.name: file_digest(path) for path in sorted(directory.iterdir())
        if path.is_file() and path.name != HEADER
    }
    body = json.dumps(
        {"version": VERSION, "format": format, "args": dict(args), "files": files},
        allow_nan=True, indent=1,
    ).encode()
    temporary = directory / f".{HEADER}.tmp"
    with open(temporary, "wb") as file:
        file.write(body)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, directory / HEADER)
    _fsync_dir(directory)


def publish(link: Path, directory: Path) -> None:
    """Point ``link`` at ``directory`` (a sibling), atomically: a new link under a temporary
    name, renamed over the old one.

    :raises OSError: when ``link`` is a real directory (not made by hookline).
    """
    temporary = link.with_name(f".{link.name}.link-{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(directory.name, temporary)
    try:
        os.replace(temporary, link)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(link.parent)


def is_sharded_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint name linking to a directory."""
    return path.is_symlink() and path.is_dir()


def remove(link: Path) -> None:
    """Remove the checkpoint name ``link`` (its directory goes at the next :func:`collect`)."""
    if link.is_symlink():
        link.unlink()


def collect(weights: Path, keep: Iterable[Path] = ()) -> None:
    """Remove the checkpoint directories under ``weights`` that no name links to (older
    checkpoints, interrupted writes), except ``keep``, and stale temporary links."""
    if not weights.is_dir():
        return
    linked = {path.resolve().name for path in weights.iterdir() if path.is_symlink()}
    linked.update(path.name for path in keep)
    for path in weights.iterdir():
        if path.name.startswith(PREFIX) and path.name not in linked and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_symlink() and path.name.endswith(".tmp") and ".link-" in path.name:
            path.unlink(missing_ok=True)
