"""The commands that only describe (``--help``, ``hooks``, ``plugins``, ``settings``) import no
framework: a recipe declares its settings without importing its backend, so that they answer at
once (their time is in benchmarks/overhead.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FRAMEWORKS = ("torch", "jax", "jaxlib", "flax", "optax", "numpy", "sklearn", "transformers",
              "lightning", "keras")
PROBE = (
    "import contextlib, io, json, sys\n"
    "from hookline.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    try:\n"
    "        code = main(sys.argv[1:])\n"
    "    except SystemExit as stop:\n"
    "        code = stop.code\n"
    "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))\n"
)


@pytest.mark.parametrize(
    "command",
    [["--help"], ["hooks"], ["plugins"], ["settings"], ["settings", "--recipe", "digits-jax"],
     ["settings", "train"]],
)
def test_describing_commands_import_no_framework(command):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *command], capture_output=True, text=True, check=True
    )
    code, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert code in (0, None)
    assert sorted(set(modules) & set(FRAMEWORKS)) == []


def test_the_demo_recipe_still_builds_its_task_when_asked():
    from hookline.recipe import load_recipe

    recipe = load_recipe("digits")
    manager_settings = {"data": "digits", "hidden": 8, "seed": 0, "lr": 1e-3,
                        "weight_decay": 0.0, "device": "cpu", "precision": "32",
                        "accumulate": 1, "clip": 0.0, "batch": 32, "val_split": 0.2}
    pytest.importorskip("torch")
    task = recipe.task(manager_settings)
    assert type(task).__name__ == "TorchTask"
    assert len(task.parameters()) == 6
