"""Shared fixtures: small regression data for the pure-Python toy task, and shorter names for
the plugin-author kit's fixtures (hookline's pytest plugin, which pytest loads by itself)."""

from __future__ import annotations

import importlib
import importlib.metadata
import random
from pathlib import Path

import pytest

from hookline import PluginManager
from hookline.backends.tiny import TinyBackend
from hookline.testing import LinearRegressionTask, make_batches
from hookline.testing.distributions import write_distribution

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


@pytest.fixture
def backend(hookline_backend: TinyBackend) -> TinyBackend:
    """The kit's ``hookline_backend``: each framework backend in turn, so that plugin tests run
    unchanged on torch and on JAX."""
    return hookline_backend


@pytest.fixture
def manager(hookline_manager: PluginManager) -> PluginManager:
    """The kit's ``hookline_manager``: no entry-point plugins, only what a test registers."""
    return hookline_manager


@pytest.fixture(autouse=True)
def _no_plugin_selection_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOKLINE_PLUGINS", raising=False)
    monkeypatch.delenv("HOOKLINE_DISABLE_PLUGINS", raising=False)


EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "hookline-epoch-timer"


@pytest.fixture
def epoch_timer_installed(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The example plugin (``examples/hookline-epoch-timer``) installed, so that a default
    manager discovers it through its entry point ``epoch_timer``: as pip installed it where
    it is (CI), else written on the spot as an installed distribution from the package's own
    source.  Returns the entry point's name."""
    try:
        importlib.metadata.distribution("hookline-epoch-timer")
    except importlib.metadata.PackageNotFoundError:
        folder = tmp_path_factory.mktemp("site")
        source = (EXAMPLE_PLUGIN / "src" / "hookline_epoch_timer" / "__init__.py").read_text()
        write_distribution(
            folder, "hookline-epoch-timer", "hookline_epoch_timer", source,
            {"epoch_timer": "hookline_epoch_timer:EpochTimer"}, version="0.1.0",
        )
        monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()
    return "epoch_timer"
