"""Installed distributions made on the spot (:mod:`hookline.testing.distributions`), for
in-process tests of entry-point plugins; the pip-installed ones are in test_entrypoints.py and
test_new_plugin.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookline.testing.distributions import write_distribution


def install(
    monkeypatch: pytest.MonkeyPatch, root: Path, distribution: str, module: str, source: str,
    entry_points: dict[str, str], version: str = "1.0",
) -> None:
    """Make ``distribution`` (holding ``module``, with ``source``) importable and declare its
    ``hookline`` entry points (name to ``module:attribute``) for the rest of the test."""
    write_distribution(root, distribution, module, source, entry_points, version)
    monkeypatch.syspath_prepend(str(root))
