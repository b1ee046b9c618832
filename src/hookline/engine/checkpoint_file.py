"""The checkpoint file: a header of plain data, then the task's payload.

::

    HOOKLINE-CHECKPOINT\\n            magic line
    <8-byte big-endian length>        of the header
    {"version": 1, "format": "torch", "sha256": "...", "args": {...}}    the header, JSON
    <payload>                         Task.save_checkpoint's bytes: task, progress, metrics,
                                      plugins

The header can be read without any framework (the ``hookline`` command reads the run's
settings from it before it builds a task), the payload's digest catches a flipped bit, and the
payload is read back only by a task of the same format, which never runs code from it.
This module reads files and encodes bytes; writing them is the checkpoint plugin's business
(:mod:`hookline.plugins.support.checkpoint_writer` streams the payload into the file and
fills the digest in afterwards).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookline.engine import checkpoint_dir
from hookline.errors import CheckpointError

if TYPE_CHECKING:
    from hookline.run import StateTask

MAGIC = b"HOOKLINE-CHECKPOINT\n"
VERSION = 1
_LENGTH_BYTES = 8


#: The digest a header holds until the payload's is known (:func:`header`).
DIGEST_PLACEHOLDER = "0" * 64


def header(format: str, args: Mapping[str, Any], sha256: str = DIGEST_PLACEHOLDER) -> bytes:
    """What precedes the payload in a checkpoint file: the magic line, the header's length and
    the header (``args`` must be plain JSON data) with the payload's ``sha256`` (hex).

    A writer that streams the payload writes this header with the placeholder digest first,
    then overwrites the digest in place (:func:`digest_offset`) once the payload is hashed:
    the header's length does not change.
    """
    if len(sha256) != len(DIGEST_PLACEHOLDER):
        raise ValueError(f"a sha256 digest is 64 hex digits, got {sha256!r}")
    body = json.dumps(
        {"version": VERSION, "format": format, "sha256": sha256, "args": dict(args)},
        allow_nan=True,
    ).encode()
    return b"".join((MAGIC, len(body).to_bytes(_LENGTH_BYTES, "big"), body))


def digest_offset(header_bytes: bytes) -> int:
    """Where the digest's 64 hex digits start in :func:`header`'s bytes."""
    # "version" and "format" come first, and a JSON string holds no bare quote: the first
    # '"sha256": "' is the key's
    return header_bytes.index(b'"sha256": "') + len(b'"sha256": "')


def encode(payload: bytes, format: str, args: Mapping[str, Any]) -> bytes:
    """A checkpoint file's bytes: the header (``args`` must be plain JSON data) and payload."""
    return header(format, args, hashlib.sha256(payload).hexdigest()) + payload


def _split(data: bytes, source: str) -> tuple[dict[str, Any], int]:
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{source!r} is not a hookline checkpoint")
    start = len(MAGIC) + _LENGTH_BYTES
    length = int.from_bytes(data[len(MAGIC) : start], "big")
    try:
        header = json.loads(data[start : start + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if (
        len(data) < start + length
        or not isinstance(header, dict)
        or not isinstance(header.get("args"), dict)
        or not isinstance(header.get("format"), str)
    ):
        raise CheckpointError(f"checkpoint {source!r} is truncated or corrupt: bad header")
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {source!r} has format version {header.get('version')!r}; this "
            f"hookline reads version {VERSION}"
        )
    return header, start + length


def _read(path: str | Path) -> tuple[bytes, str]:
    source = str(path)
    try:
        return Path(path).read_bytes(), source
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {source!r} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint {source!r} is a directory, not a file") from None
    except OSError as error:
        raise CheckpointError(f"checkpoint {source!r} cannot be read: {error.strerror}") from None


def read_header(path: str | Path) -> dict[str, Any]:
    """The header of the checkpoint at ``path`` (``format``, ``args``, ...), without the
    payload's framework.

    :raises CheckpointError: when the file is missing or is not a hookline checkpoint.
    """
    if checkpoint_dir.is_checkpoint_dir(path):  # a sharded checkpoint
        return checkpoint_dir.read_header(path)
    data, source = _read(path)
    return _split(data, source)[0]


def load_checkpoint(path: str | Path, task: StateTask) -> dict[str, Any]:
    """The checkpoint at ``path``, its payload read by ``task``: ``task``, ``progress``,
    ``metrics``, ``plugins`` and the header's ``args``.

    :raises CheckpointError: naming the file when it is missing, truncated, altered since it
        was written (the digest differs), written by a task of another format, or would need
        code to be run to load.
    """
    if checkpoint_dir.is_checkpoint_dir(path):  # a sharded checkpoint
        return checkpoint_dir.load_checkpoint(path, task)
    data, source = _read(path)
    header, start = _split(data, source)
    payload = data[start:]
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CheckpointError(
            f"checkpoint {source!r} is corrupt: its content does not match the digest "
            "written with it (a damaged or altered file)"
        )
    if header["format"] != task.checkpoint_format:
        raise CheckpointError(
            f"checkpoint {source!r} was written by a {header['format']} task; this is a "
            f"{task.checkpoint_format} task"
        )
    checkpoint = task.load_checkpoint(payload, source)
    if not isinstance(checkpoint, dict) or "task" not in checkpoint:
        raise CheckpointError(f"checkpoint {source!r} holds no task state")
    checkpoint["args"] = header["args"]
    return checkpoint
