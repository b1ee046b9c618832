"""File helpers for plugins that write: atomic writes, and run directories that are claimed
atomically (two runs started at once never share one) under names that stay inside the
project folder."""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from hookline.errors import UserError
from hookline.settings import SettingsError

#: The longest file name most file systems take, in bytes.
MAX_NAME_BYTES = 255


@functools.cache
def file_mode() -> int:
    """The mode new files get under this process's umask (read once: reading the umask means
    setting it, which must not race with threads creating files later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


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
        os.fchmod(handle, file_mode())  # mkstemp makes it 0600; run files follow the umask
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


def check_run_name(name: str) -> str:
    """``name`` if it names one folder inside the project, else :class:`SettingsError`."""
    problem = None
    if name in ("", ".", ".."):
        problem = "must name a folder (not empty, '.' or '..')"
    elif "/" in name or "\\" in name or os.sep in name:
        problem = "must be one folder name, without path separators"
    elif len(name.encode()) > MAX_NAME_BYTES - 8:  # room for a number and a temporary suffix
        problem = f"is {len(name.encode())} bytes long; at most {MAX_NAME_BYTES - 8}"
    if problem is not None:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise SettingsError(f"setting 'name' {problem}, got {shown!r}")
    return name


def _make_dirs(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"cannot create {str(folder)!r}: a file is in the way") from None
    except OSError as error:
        raise UserError(f"cannot create {str(folder)!r}: {error.strerror}") from None


def claim_run_dir(parent: Path, name: str, *, reuse: bool = False) -> Path:
    """Create and return a run directory: ``parent/name`` when ``reuse`` is true, else the
    first of ``parent/name``, ``parent/name2``, ... that this call creates itself (creation is
    the claim, so parallel runs never share a directory).

    :raises UserError: naming the folder when it cannot be created (a file in the way, no
        permission, ...).
    """
    if reuse:
        _make_dirs(parent / name)
        return parent / name
    _make_dirs(parent)
    pattern = re.compile(rf"^{re.escape(name)}(\d*)$")
    taken = [int(match.group(1) or 1) for child in parent.iterdir()
             if (match := pattern.match(child.name))]
    number = max(taken, default=0) + 1
    while True:
        candidate = parent / (name if number == 1 else f"{name}{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            number += 1  # another run claimed it first
            continue
        except OSError as error:
            raise UserError(f"cannot create {str(candidate)!r}: {error.strerror}") from None
        return candidate
