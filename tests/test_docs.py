"""docs/writing-a-plugin.md runs: its Python blocks are executed in order, in one namespace,
once on each installed backend; the test functions it shows are then called with the kit's
fixtures, the guide's plugin installed as a real distribution for the command-line one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import hookline
from hookline.testing import backends, run_cli
from tests.installed import install

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-a-plugin.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def plugin_source(blocks: list[str]) -> str:
    """The guide's first two blocks, less their demonstration: what a plugin module holds."""
    (definition,) = [block for block in blocks if "class WeightNorm" in block]
    return "import hookline\n\n" + definition.split("\n\ntrainer = ")[0]


@pytest.mark.parametrize("name", backends.NAMES)
def test_every_python_block_of_the_guide_runs(name, monkeypatch, tmp_path, capsys):
    if not backends.available(name):
        pytest.skip(f"the {name} backend is not installed")
    monkeypatch.setattr(backends, "installed", lambda: [name])
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) == 12
    namespace: dict[str, object] = {"__name__": "guide"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"{GUIDE.name}, block {number}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"block {number} of the guide fails: {error!r}") from error
    assert "hook profile" in capsys.readouterr().out

    install(monkeypatch, tmp_path / "site", "hookline-weight-norm", "hookline_weight_norm",
            plugin_source(blocks), {"weight_norm": "hookline_weight_norm:WeightNorm"})
    fixtures = {
        "hookline_backend": backends.backend(name),
        "hookline_manager": hookline.PluginManager(),
        "hookline_cli": lambda *args: run_cli(args, tmp_path / "cli"),
    }
    tests = {key: value for key, value in namespace.items() if key.startswith("test_")}
    assert len(tests) == 2
    for test in tests.values():
        assert callable(test)
        arguments = inspect.signature(test).parameters
        test(**{argument: fixtures[argument] for argument in arguments})

