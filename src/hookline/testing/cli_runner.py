"""Run ``hookline`` commands in a folder and look at what they did, in the spirit of pytest's
``pytester``: the exit status, what was printed, and the run folder the command made.

>>> result = run_cli(["train", "epochs=1"], cwd=tmp_path)
>>> result.exit_code, result.run_dir
(0, PosixPath('.../runs/train/exp'))

Commands run in this process (fast, and a test's monkeypatching applies).  Warnings are
printed to the captured standard error as the command line prints them, one line each.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


@dataclass(frozen=True)
class CliResult:
    """What a ``hookline`` command did: its exit status, its output, and the run folder it
    created under ``runs/`` (None when it created none)."""

    exit_code: int
    stdout: str
    stderr: str
    run_dir: Path | None

    @property
    def output(self) -> str:
        """Standard output, then standard error."""
        return self.stdout + self.stderr


def _run_folders(cwd: Path) -> set[Path]:
    return {path for path in cwd.glob("runs/*/*") if path.is_dir()}


def run_cli(args: Sequence[str], cwd: str | os.PathLike[str]) -> CliResult:
    """Run ``hookline ARGS...`` in ``cwd`` (made if missing) and return a :class:`CliResult`."""
    from hookline.cli import main  # the command line loads lazily: not at import

    folder = Path(cwd)
    folder.mkdir(parents=True, exist_ok=True)
    before = _run_folders(folder)
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()

    def show(message: Any, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    try:
        os.chdir(folder)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = show
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.chdir(previous)
    created = sorted(_run_folders(folder) - before, key=lambda path: path.stat().st_mtime)
    return CliResult(code, out.getvalue(), err.getvalue(), created[-1] if created else None)
