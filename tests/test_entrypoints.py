"""Entry-point discovery with real packages pip-installed into a fresh virtual environment.

Two distributions are built as wheels and installed into a new venv (:mod:`tests.venvs`): the
example plugin in ``examples/hookline-epoch-timer`` and a plugin whose module raises on import.
They are the only plugins the new venv sees, whatever else this environment holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.venvs import fresh_venv, pip_install

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "hookline-epoch-timer"

PROBE = textwrap.dedent(
    """
    import dataclasses, json, sys, warnings
    import numpy as np
    import hookline
    from hookline.testing import LinearRegressionTask, make_batches

    options = json.loads(sys.argv[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if options.get("default_manager"):
            manager = hookline.default_manager()
        else:
            manager = hookline.PluginManager()
            manager.load_entrypoint_plugins(**options.get("load", {}))
    x = np.random.default_rng(0).normal(size=(32, 2))
    trainer = hookline.Trainer(LinearRegressionTask(2), manager=manager)
    settings = options.get("settings", {})
    metrics = trainer.fit(make_batches(x, x.sum(axis=1), 8), epochs=2, **settings)
    print(json.dumps({
        "plugins": [dataclasses.asdict(info) for info in manager.list_plugins()],
        "blocked": manager.blocked_names(),
        "warnings": [str(w.message) for w in caught if w.category is hookline.PluginLoadWarning],
        "metrics": metrics,
    }))
    """
)

BROKEN_PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "hookline-broken-plugin"
version = "0.2.0"

[project.entry-points.hookline]
broken = "hookline_broken"
"""


@pytest.fixture(scope="session")
def plugin_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh venv with both plugin packages pip-installed."""
    root = tmp_path_factory.mktemp("entrypoints")
    broken = root / "broken"
    (broken / "hookline_broken").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (broken / "hookline_broken" / "__init__.py").write_text(
        "raise ImportError('hookline_broken needs a library that is not installed')\n"
    )
    wheels = root / "wheels"
    for project in (EXAMPLE, broken):
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "-w", str(wheels), str(project)],
            check=True, cwd=root,
        )
    python = fresh_venv(root)
    pip_install(python, *map(str, sorted(wheels.glob("*.whl"))))
    return python


def run_probe(
    python: Path, env: dict[str, str] | None = None, **options: object
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("HOOKLINE_")
    }
    environment.update(env or {})
    return subprocess.run(
        [str(python), "-c", PROBE, json.dumps(options)],
        capture_output=True, text=True, env=environment, check=False,
    )


def probe(python: Path, env: dict[str, str] | None = None, **options: object) -> dict:
    result = run_probe(python, env, **options)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def names(report: dict) -> list[str]:
    return [plugin["name"] for plugin in report["plugins"]]


def test_installed_plugin_is_discovered_listed_and_fires(plugin_python):
    report = probe(plugin_python)
    (info,) = report["plugins"]
    assert info == {
        "name": "epoch_timer",
        "source": "entry point",
        "distribution": "hookline-epoch-timer",
        "version": "0.1.0",
        "hooks": ["hookline_add_options", "hookline_configure", "on_fit_epoch_end",
                  "on_train_epoch_start"],
    }
    assert 0 < report["metrics"]["time/epoch"] < 60


def test_the_plugin_reads_its_own_setting(plugin_python):
    seconds = probe(plugin_python)["metrics"]["time/epoch"]
    report = probe(plugin_python, settings={"epoch_timer_unit": "ms"})
    assert report["metrics"]["time/epoch"] > seconds


def test_broken_plugin_is_skipped_with_a_warning_naming_it(plugin_python):
    (warning,) = probe(plugin_python)["warnings"]
    assert "plugin 'broken'" in warning
    assert "hookline-broken-plugin 0.2.0" in warning
    assert "ImportError: hookline_broken needs a library that is not installed" in warning


def test_strict_mode_makes_the_broken_plugin_an_error(plugin_python):
    result = run_probe(plugin_python, load={"strict": True})
    assert result.returncode != 0
    assert "PluginLoadError: plugin 'broken'" in result.stderr
    assert "hookline-broken-plugin 0.2.0" in result.stderr


@pytest.mark.parametrize(
    ("env", "load", "expected", "warns"),
    [
        ({"HOOKLINE_PLUGINS": ""}, {}, [], False),
        ({"HOOKLINE_PLUGINS": "epoch_timer"}, {}, ["epoch_timer"], False),
        ({"HOOKLINE_DISABLE_PLUGINS": "epoch_timer"}, {}, [], True),
        ({"HOOKLINE_DISABLE_PLUGINS": "broken, epoch_timer"}, {}, [], False),
        ({}, {"only": []}, [], False),
        ({}, {"only": ["epoch_timer"]}, ["epoch_timer"], False),
        ({}, {"block": ["epoch_timer"]}, [], True),
    ],
    ids=["env-none", "env-only", "env-disable", "env-disable-both", "arg-none", "arg-only",
         "arg-block"],
)
def test_plugin_selection_by_environment_and_arguments(plugin_python, env, load, expected, warns):
    report = probe(plugin_python, env=env, load=load)
    assert names(report) == expected
    assert bool(report["warnings"]) is warns
    assert ("time/epoch" in report["metrics"]) is ("epoch_timer" in expected)


def test_blocked_plugins_are_reported_as_blocked(plugin_python):
    report = probe(plugin_python, env={"HOOKLINE_DISABLE_PLUGINS": "epoch_timer"})
    assert report["blocked"] == ["epoch_timer"]


@pytest.mark.parametrize(
    ("env", "load", "named"),
    [
        ({"HOOKLINE_PLUGINS": "epoch_timer,slack"}, {}, "slack"),
        ({}, {"only": ["epoch_timer", "slack"]}, "slack"),
        ({"HOOKLINE_PLUGINS": "broken"}, {}, "broken"),
    ],
    ids=["env-not-installed", "arg-not-installed", "env-broken"],
)
def test_a_plugin_asked_for_by_name_that_cannot_be_loaded_is_an_error(
    plugin_python, env, load, named
):
    result = run_probe(plugin_python, env=env, load=load)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    if named == "slack":
        assert last == (
            "hookline.manager.errors.PluginLoadError: plugin 'slack' is not installed "
            "(installed plugins: broken, epoch_timer)"
        )
    else:  # installed, but it fails to import: the user asked for it, so it is no warning
        assert last.startswith("hookline.manager.errors.PluginLoadError: plugin 'broken' ")
        assert "hookline-broken-plugin 0.2.0" in last


def test_default_manager_discovers_installed_plugins(plugin_python):
    report = probe(plugin_python, default_manager=True)
    assert names(report) == ["epoch_timer"]
    assert len(report["warnings"]) == 1


def cli_plugins(python: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    return subprocess.run(
        [str(python), "-m", "hookline", "plugins", "--json", *flags],
        capture_output=True, text=True, env=environment, check=False,
    )


@pytest.mark.parametrize(
    ("flags", "expected", "skipped"),
    [
        ((), ["epoch_timer"], 1),
        (("--plugins", "epoch_timer"), ["epoch_timer"], 0),
        (("--disable-plugins", "epoch_timer,broken"), [], 0),
        (("--no-plugins",), [], 0),
    ],
    ids=["all", "only", "disable", "none"],
)
def test_command_line_plugin_choice(plugin_python, flags, expected, skipped):
    result = cli_plugins(plugin_python, *flags)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    entry_points = [p["name"] for p in listing["plugins"] if p["source"] == "entry point"]
    assert entry_points == expected
    assert len(listing["skipped"]) == skipped


def test_command_line_strict_mode_fails_in_one_line(plugin_python):
    result = cli_plugins(plugin_python, "--strict")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("hookline plugins: error: plugin 'broken'")
    assert "hookline-broken-plugin 0.2.0" in line
