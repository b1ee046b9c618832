"""pytest fixtures for plugin tests: ``pytest_plugins = ["hookline.testing.fixtures"]``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hookline.manager import PluginManager
from hookline.testing.recorder import HookRecorder


@pytest.fixture
def hook_recorder() -> Iterator[HookRecorder]:
    """A :class:`HookRecorder` listening to every hook of a fresh :class:`PluginManager`
    (``hook_recorder.manager``); pass that manager to the phase under test."""
    recorder = HookRecorder(PluginManager(), listen_all=True)
    yield recorder
    recorder.close()
