"""The plugin-author kit: ``hookline.testing`` imports no test or ML framework, pytest loads its
fixtures through the ``pytest11`` entry point, and the command runner reports what a command
did."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest


def test_importing_the_kit_loads_neither_pytest_nor_a_framework():
    probe = ("import sys, hookline.testing; "
             "print(sorted(m for m in ('pytest', 'torch', 'jax', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_pytest_loads_the_fixtures_through_the_pytest11_entry_point(request):
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="pytest11")
                      if ep.name == "hookline"]
    assert entry_point.value == "hookline.testing.pytest_plugin"
    plugin = request.config.pluginmanager.get_plugin("hookline")
    assert plugin is not None
    assert plugin.__name__ == "hookline.testing.pytest_plugin"
    for fixture in ("hookline_manager", "hookline_recorder", "hookline_backend", "hookline_cli"):
        assert hasattr(plugin, fixture), fixture
    assert request.getfixturevalue("hookline_manager").list_plugins() == []


def test_the_recorder_fixture_sees_every_hook_of_a_run(hookline_recorder):
    from hookline import Trainer
    from hookline.testing import LinearRegressionTask, make_batches

    data = make_batches([[1.0], [2.0]], [2.0, 4.0], 1)
    Trainer(LinearRegressionTask(1), manager=hookline_recorder.manager).fit(data, epochs=1)
    assert hookline_recorder.names.count("on_train_batch_end") == 2
    assert hookline_recorder.names[-1] == "teardown"


def test_the_backend_fixture_gives_a_task_and_data_of_one_framework(hookline_backend):
    task = hookline_backend.make_task()
    (inputs, _targets), *_ = hookline_backend.batches(rows=8, size=4)
    assert len(hookline_backend.batches(rows=8, size=4)) == 2
    assert type(inputs).__module__.partition(".")[0] in ("torch", "jaxlib", "jax", "numpy")
    assert set(hookline_backend.weights(task)) >= set(task.parameters())


def test_the_command_runner_returns_status_output_and_run_folder(hookline_cli):
    pytest.importorskip("torch")
    result = hookline_cli("train", "epochs=1", "plots=false")
    assert result.exit_code == 0, result.stderr
    assert result.run_dir is not None
    assert result.run_dir.name == "exp"
    assert json.loads((result.run_dir / "summary.json").read_text())["epochs"] == 1
    assert "training finished after 1/1 epochs" in result.stdout


def test_the_command_runner_shows_a_user_error_as_the_user_sees_it(hookline_cli):
    result = hookline_cli("train", "epochz=1")
    assert result.exit_code == 2
    assert result.stderr == (
        "hookline train: error: unknown setting 'epochz'; did you mean 'epochs'?\n"
    )
    assert result.run_dir is None
    assert hookline_cli("no-such-command").exit_code == 2
