"""hookline's pytest plugin: fixtures for testing plugins.  pytest loads it by itself when
hookline is installed (entry point ``pytest11``); nothing else imports it.

* ``hookline_manager``: a fresh :class:`~hookline.PluginManager` without installed plugins.
* ``hookline_recorder``: a :class:`~hookline.testing.HookRecorder` on that manager, listening to
  every hook; pass ``hookline_recorder.manager`` to the phase under test.
* ``hookline_backend``: each installed framework backend in turn (torch, JAX; the others are
  skipped): a tiny classifier task and matching data
  (:mod:`hookline.testing.backends`), so that a plugin test runs on every backend.
* ``hookline_cli``: runs ``hookline`` commands in a temporary folder
  (:func:`~hookline.testing.cli_runner.run_cli`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hookline.manager import PluginManager
from hookline.testing.backends import NAMES, available, backend
from hookline.testing.cli_runner import CliResult, run_cli
from hookline.testing.recorder import HookRecorder


@pytest.fixture
def hookline_manager() -> PluginManager:
    """A new plugin manager with no entry-point plugin loaded: a test sees only what it
    registers, whatever else is installed."""
    return PluginManager()


@pytest.fixture
def hookline_recorder(hookline_manager: PluginManager) -> Iterator[HookRecorder]:
    """Records every hook call on ``hookline_manager`` (a listener implements every hook)."""
    recorder = HookRecorder(hookline_manager, listen_all=True)
    yield recorder
    recorder.close()


@pytest.fixture(params=NAMES)
def hookline_backend(request: pytest.FixtureRequest) -> Any:
    """Each framework backend in turn, skipped where its framework is not installed:
    ``make_task()``, ``batches(rows, size)``, ``weights(task)``, ...
    (see :mod:`hookline.testing.backends`)."""
    if not available(request.param):
        pytest.skip(f"the {request.param} backend is not installed")
    return backend(request.param)


@pytest.fixture
def hookline_cli(tmp_path: Path) -> Callable[..., CliResult]:
    """``hookline_cli("train", "epochs=1")`` runs the command in a temporary folder and returns
    its :class:`~hookline.testing.cli_runner.CliResult` (exit code, output, run folder)."""

    def run(*args: str) -> CliResult:
        return run_cli(args, tmp_path)

    return run
