"""Installed distributions made on the spot: a module and its ``.dist-info`` folder, which
``importlib.metadata`` reads exactly as it reads what pip installs once the folder is on
``sys.path``.  For tests (and benchmarks) of entry-point discovery without building packages."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path


def write_distribution(
    folder: Path, distribution: str, module: str, source: str,
    entry_points: Mapping[str, str], version: str = "1.0",
) -> None:
    """Write ``module.py`` (``source``, dedented) and the metadata of ``distribution`` into
    ``folder``, declaring ``entry_points`` (name to ``module:attribute``) in the ``hookline``
    group.  Put ``folder`` on ``sys.path`` to install it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    info = folder / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[hookline]\n{lines}")
