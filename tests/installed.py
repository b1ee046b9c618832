"""Installed distributions made on the spot: a module and its ``.dist-info`` folder on
``sys.path``, which ``importlib.metadata`` reads exactly as it reads what pip installs.  For
in-process tests of entry-point plugins; the pip-installed ones are in test_entrypoints.py and
test_new_plugin.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


def install(
    monkeypatch: pytest.MonkeyPatch, root: Path, distribution: str, module: str, source: str,
    entry_points: dict[str, str], version: str = "1.0",
) -> None:
    """Make ``distribution`` (holding ``module``, with ``source``) importable and declare its
    ``hookline`` entry points (name to ``module:attribute``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[hookline]\n{lines}")
    monkeypatch.syspath_prepend(str(root))
