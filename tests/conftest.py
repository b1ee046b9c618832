"""Shared fixtures: small regression data for the pure-Python toy task, each framework backend
in turn, and a clean manager."""

from __future__ import annotations

import random

import pytest

from hookline import PluginManager
from hookline.testing import LinearRegressionTask, make_batches
from tests import backends

pytest_plugins = ["hookline.testing.fixtures"]

TRUE_WEIGHT = [1.0, -2.0, 0.5]
TRUE_BIAS = 0.3


def regression_rows(rows: int, seed: int = 0) -> tuple[list[list[float]], list[float]]:
    """``rows`` random inputs and their targets under :data:`TRUE_WEIGHT` and TRUE_BIAS."""
    generator = random.Random(seed)
    x = [[generator.gauss(0.0, 1.0) for _ in TRUE_WEIGHT] for _ in range(rows)]
    y = [sum(v * w for v, w in zip(row, TRUE_WEIGHT, strict=True)) + TRUE_BIAS for row in x]
    return x, y


def regression_batches(rows: int, batch_size: int, seed: int = 0) -> list:
    return make_batches(*regression_rows(rows, seed), batch_size)


@pytest.fixture
def task() -> LinearRegressionTask:
    return LinearRegressionTask(n_features=len(TRUE_WEIGHT), lr=0.1)


@pytest.fixture(params=backends.NAMES)
def backend(request: pytest.FixtureRequest) -> backends.TorchBackend | backends.JaxBackend:
    """Each framework backend in turn (skipped where its framework is not installed): plugin
    tests take it to run unchanged on torch and on JAX."""
    if not backends.available(request.param):
        pytest.skip(f"the {request.param} backend is not installed")
    return backends.backend(request.param)


@pytest.fixture
def manager() -> PluginManager:
    """A manager without entry-point plugins, so that tests see only what they register."""
    return PluginManager()


@pytest.fixture(autouse=True)
def _no_plugin_selection_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOKLINE_PLUGINS", raising=False)
    monkeypatch.delenv("HOOKLINE_DISABLE_PLUGINS", raising=False)
