"""``hookline new-plugin``: the package it writes installs with ``pip install -e`` into a fresh
virtual environment, passes its own tests (which use hookline's pytest fixtures), is listed by
``hookline plugins`` and runs in ``hookline train``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.venvs import fresh_venv, pip_install, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh venv's interpreter, and the plugin package made with ``hookline new-plugin``
    and installed there in editable mode."""
    root = tmp_path_factory.mktemp("new-plugin")
    python = fresh_venv(root)
    made = run(python, ["-m", "hookline", "new-plugin", "step_count", "--dir", str(root)])
    assert made.returncode == 0, made.stderr
    package = root / "hookline-step-count"
    pip_install(python, "-e", str(package))
    return python, package


def test_the_new_package_passes_its_own_tests(created):
    python, package = created
    result = run(python, ["-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout  # 2 backends x 2 tests, and the command line's


def test_hookline_plugins_lists_it(created):
    python, _ = created
    result = run(python, ["-m", "hookline", "plugins", "--json"])
    assert result.returncode == 0, result.stderr
    (listed,) = [p for p in json.loads(result.stdout)["plugins"] if p["source"] == "entry point"]
    assert listed["name"] == "step_count"
    assert listed["distribution"] == "hookline-step-count"
    assert "on_fit_epoch_end" in listed["hooks"]


def test_hookline_train_runs_it_and_its_flag_turns_it_off(created, tmp_path):
    python, _ = created
    on = run(python, ["-m", "hookline", "train", "epochs=2", "step_count_every=2"], cwd=tmp_path)
    assert on.returncode == 0, on.stderr
    summary = json.loads((tmp_path / "runs/train/exp/summary.json").read_text())
    assert summary["final_metrics"]["step_count/epochs"] == 2.0
    assert summary["final_metrics"]["step_count/steps"] > 0
    off = run(python, ["-m", "hookline", "train", "epochs=1", "step_count=false"], cwd=tmp_path)
    assert off.returncode == 0, off.stderr
    summary = json.loads((tmp_path / "runs/train/exp2/summary.json").read_text())
    assert not any(name.startswith("step_count/") for name in summary["final_metrics"])


def test_hookline_settings_names_the_plugin_as_owner(created):
    python, _ = created
    result = run(python, ["-m", "hookline", "settings", "--json"])
    assert result.returncode == 0, result.stderr
    owners = {row["name"]: row["owner"] for row in json.loads(result.stdout)}
    assert owners["step_count_every"] == "step_count"
    assert owners["step_count"] == "hookline-step-count 0.1.0"  # its on/off flag
