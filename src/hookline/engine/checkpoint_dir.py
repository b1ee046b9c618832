"""Sharded checkpoints: a directory of shards with a plain-data header.

::

    weights/last -> .ckpt-s120-3f9c01   a symbolic link, swapped atomically to the newest
    weights/.ckpt-s120-3f9c01/
        hookline.json                   the header: {"version": 1, "format": "torch-dcp",
                                        "args": {...}, "files": {name: sha256, ...}}
        ...                             the task's files (shards, their index, plain state)

The header is written last, by rank zero, once every process's files are complete; a
directory without it is an interrupted write and is never read.  Its digests catch a flipped
bit or an altered file before the task reads any of them, and the task reads its files
without running code (:meth:`hookline.run.ShardedStateTask.load_sharded`).  This module only
reads; the checkpoint plugin writes (:mod:`hookline.plugins.support.checkpoint_dirs`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookline.errors import CheckpointError

if TYPE_CHECKING:
    from hookline.run import StateTask

#: The header's file name inside a checkpoint directory.
HEADER = "hookline.json"
VERSION = 1
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_checkpoint_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory (or a link to one): a sharded checkpoint's place."""
    return Path(path).is_dir()


def read_header(path: str | Path) -> dict[str, Any]:
    """The header of the sharded checkpoint at ``path`` (``format``, ``args``, ``files``).

    :raises CheckpointError: naming the directory when it has no complete header.
    """
    source = str(path)
    try:
        text = (Path(path) / HEADER).read_text()
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {source!r} is no complete hookline checkpoint: it has no {HEADER} "
            "(an interrupted write?)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint {source!r} cannot be read: {error}") from None
    try:
        header = json.loads(text)
    except json.JSONDecodeError:
        header = None
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("args"), dict)
        or not isinstance(header.get("format"), str)
        or not isinstance(header.get("files"), dict)
    ):
        raise CheckpointError(f"checkpoint {source!r} is corrupt: bad {HEADER}")
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {source!r} has format version {header.get('version')!r}; this "
            f"hookline reads version {VERSION}"
        )
    return header


def verify(path: str | Path, header: dict[str, Any]) -> None:
    """Check every file the header lists against its digest.

    :raises CheckpointError: naming the file that is missing, or differs from what was
        written (a damaged or altered file).
    """
    root = Path(path)
    for name, expected in header["files"].items():
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: bad file name {name!r}")
        file = root / name
        try:
            actual = file_digest(file)
        except OSError:
            raise CheckpointError(f"checkpoint file {str(file)!r} is missing") from None
        if actual != expected:
            raise CheckpointError(
                f"checkpoint file {str(file)!r} is corrupt: its content does not match the "
                "digest written with it (a damaged or altered file)"
            )


def load_checkpoint(path: str | Path, task: StateTask) -> dict[str, Any]:
    """The sharded checkpoint at ``path`` for ``task``: ``task`` (read by the task's
    ``load_state_dict``), ``progress``, ``metrics``, ``plugins`` and the header's ``args``.

    :raises CheckpointError: naming the directory or file when it is incomplete, altered,
        written by a task of another format, or would need code to be run to load.
    """
    from hookline.run import ShardedStateTask

    source = str(path)
    path = Path(path).resolve()  # one directory throughout, even if the link is swapped
    header = read_header(path)
    if not isinstance(task, ShardedStateTask):
        raise CheckpointError(
            f"checkpoint {source!r} is a directory of {header['format']} shards; this task "
            "reads single-file checkpoints only"
        )
    if header["format"] != task.sharded_format:
        raise CheckpointError(
            f"checkpoint {source!r} was written by a {header['format']} task; this task "
            f"reads {task.sharded_format}"
        )
    verify(path, header)
    checkpoint = task.load_sharded(path, source)
    if not isinstance(checkpoint, dict) or "task" not in checkpoint:
        raise CheckpointError(f"checkpoint {source!r} holds no task state")
    checkpoint["args"] = header["args"]
    return checkpoint
