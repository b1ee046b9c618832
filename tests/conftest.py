"""Shared fixtures: small regression data for the NumPy backend, and a clean plugin manager."""

from __future__ import annotations

import numpy as np
import pytest

from hookline import PluginManager
from hookline.backends.numpy import LinearRegressionTask, make_batches

pytest_plugins = ["hookline.testing"]

TRUE_WEIGHT = np.array([1.0, -2.0, 0.5])
TRUE_BIAS = 0.3


def regression_batches(rows: int, batch_size: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(TRUE_WEIGHT)))
    return make_batches(x, x @ TRUE_WEIGHT + TRUE_BIAS, batch_size)


@pytest.fixture
def task() -> LinearRegressionTask:
    return LinearRegressionTask(n_features=len(TRUE_WEIGHT), lr=0.1)


@pytest.fixture
def manager() -> PluginManager:
    """A manager without entry-point plugins, so that tests see only what they register."""
    return PluginManager()


@pytest.fixture(autouse=True)
def _no_plugin_selection_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOKLINE_PLUGINS", raising=False)
    monkeypatch.delenv("HOOKLINE_DISABLE_PLUGINS", raising=False)
