"""``hookline new-plugin NAME``: a new plugin package that works and passes its own tests.

It writes ``hookline-NAME/`` with a pyproject that declares the entry point (installed means
discovered), a plugin with a setting, a metric and state that survives resume, a README, and
tests that use hookline's pytest fixtures (``hookline_backend``, ``hookline_manager``,
``hookline_cli``)::

    hookline new-plugin gradnorm
    pip install -e hookline-gradnorm
    pytest hookline-gradnorm
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from hookline.cli.parser import CommandError
from hookline.hookspecs import HOOK_API_VERSION

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "hookline-$dash"
version = "0.1.0"
description = "A hookline plugin: $name."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["hookline>=$hookline_version"]

[project.optional-dependencies]
test = ["pytest"]

# installed means discovered: hookline loads every entry point of the group "hookline";
# the name is the plugin's name, and its on/off flag ($name=false)
[project.entry-points.hookline]
$name = "hookline_$name:$cls"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

PLUGIN = '''\
"""hookline-$dash: reports the optimizer steps of each epoch as the metric ``$name/steps``.

A starting point: a setting (``${name}_every``), a metric every logger records, and state that
a resumed run carries on.  See hookline's guide, docs/writing-a-plugin.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hookline


class $cls(hookline.Callback):
    """Adds ``$name/steps`` (optimizer steps in the epoch) to the metrics every
    ``${name}_every`` epochs, and ``$name/epochs`` (epochs seen, resumes included)."""

    #: The hook-API versions this plugin was written for.
    hookline_api = ">=$hook_api,<$next_major"
    #: A failure drops the plugin with one line; the run goes on.
    error_policy = "disable"
    #: The key of its state in checkpoints.
    state_key = "$name"

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self.epochs_seen = 0
        self._steps_before = 0

    def hookline_add_options(self, options: hookline.Options) -> None:
        options.add("${name}_every", self.every, help="report $name/steps every N epochs")

    def hookline_configure(self, settings: hookline.Settings) -> None:
        every = settings["${name}_every"]
        if every < 1:
            raise hookline.SettingsError(f"setting '${name}_every' must be >= 1, got {every}")
        self.every = every

    def on_train_epoch_start(self, trainer: hookline.Trainer) -> None:
        self._steps_before = trainer.global_step

    def on_fit_epoch_end(self, trainer: hookline.Trainer, metrics: dict[str, float]) -> None:
        self.epochs_seen += 1
        metrics["$name/epochs"] = float(self.epochs_seen)
        if (trainer.epoch + 1) % self.every == 0:
            metrics["$name/steps"] = float(trainer.global_step - self._steps_before)

    def state_dict(self) -> dict[str, Any]:
        return {"epochs_seen": self.epochs_seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epochs_seen = int(state["epochs_seen"])
'''

TESTS = '''\
"""Tests of the plugin, with hookline's pytest fixtures (installed with hookline)."""

from __future__ import annotations

import json

import hookline
from hookline.testing.backends import installed
from hookline_$name import $cls

#: The demo the command line trains: on torch, or on JAX where torch is not installed.
RECIPE = "recipe=digits" if "torch" in installed() else "recipe=digits-jax"


def test_reports_the_steps_of_each_epoch_on_every_backend(hookline_backend, hookline_manager):
    hookline_manager.register($cls(), "$name")
    trainer = hookline.Trainer(hookline_backend.make_task(), manager=hookline_manager)
    metrics = trainer.fit(hookline_backend.batches(rows=64, size=16), epochs=2)
    assert metrics["$name/steps"] == 4.0
    assert metrics["$name/epochs"] == 2.0


def test_its_state_survives_a_checkpoint(hookline_backend, hookline_manager):
    hookline_manager.register($cls(), "$name")
    trainer = hookline.Trainer(hookline_backend.make_task(), manager=hookline_manager)
    trainer.fit(hookline_backend.batches(rows=32, size=16), epochs=3)
    checkpoint = trainer.checkpoint_state()
    fresh = hookline.PluginManager()
    plugin = $cls()
    fresh.register(plugin, "$name")
    hookline.Trainer(hookline_backend.make_task(), manager=fresh).load_checkpoint_state(
        checkpoint
    )
    assert plugin.epochs_seen == 3


def test_the_command_line_runs_it_and_refuses_a_bad_value(hookline_cli):
    result = hookline_cli("train", RECIPE, "epochs=1", "${name}_every=1")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["final_metrics"]["$name/steps"] > 0
    refused = hookline_cli("train", RECIPE, "${name}_every=0")
    assert refused.exit_code == 2
    assert "'${name}_every' must be >= 1" in refused.stderr
'''

README = """\
# hookline-$dash

A [hookline](https://github.com/hookline/hookline) plugin: reports the optimizer steps of each
epoch as the metric `$name/steps` (every `${name}_every` epochs) and the epochs seen as
`$name/epochs`.

```bash
pip install -e .          # installed means discovered: `hookline plugins` lists it
hookline train ${name}_every=2
hookline train $name=false   # every installed plugin has an on/off flag
pip install -e ".[test]" && pytest
```
"""


def write_plugin(name: str, parent: Path) -> Path:
    """Write the package ``hookline-NAME`` under ``parent`` and return its folder.

    :raises CommandError: for a name that is not a lowercase Python identifier, or a folder
        that exists already.
    """
    if not _NAME.match(name):
        raise CommandError(
            f"plugin name {name!r} must be a lowercase Python name (letters, digits, _), "
            "e.g. gradnorm"
        )
    dash = name.replace("_", "-")
    root = parent / f"hookline-{dash}"
    if root.exists():
        raise CommandError(f"{str(root)!r} exists already; choose another name or folder")
    major = int(HOOK_API_VERSION.partition(".")[0])
    values = {
        "name": name, "dash": dash, "cls": "".join(p.title() for p in name.split("_")) + "Plugin",
        "hook_api": HOOK_API_VERSION, "next_major": str(major + 1),
        "hookline_version": _hookline_version(),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        f"src/hookline_{name}/__init__.py": PLUGIN,
        "tests/test_plugin.py": TESTS,
        "README.md": README,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(string.Template(template).substitute(values))
    return root


def _hookline_version() -> str:
    from hookline import __version__

    return __version__
