"""Fresh virtual environments for tests that pip-install real packages.

A new venv sees this environment's packages (hookline, pluggy, pytest, torch, ...) through a
``.pth`` file, so no download is needed, less any distribution that declares hookline plugins:
the plugins a test installs are the only ones the new venv sees, whatever else this
environment holds.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def declares_hookline_plugins(dist_info: Path) -> bool:
    entry_points = dist_info / "entry_points.txt"
    return entry_points.is_file() and "[hookline]" in entry_points.read_text().split()


def parent_packages_without_plugins(view: Path) -> Path:
    """This environment's site-packages, as links in one folder, less the distributions that
    declare hookline plugins."""
    view.mkdir()
    for folder in map(Path, site.getsitepackages()):
        for entry in folder.iterdir():
            if entry.name.endswith(".dist-info") and declares_hookline_plugins(entry):
                continue
            if not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    return view


def fresh_venv(root: Path) -> Path:
    """A new venv under ``root`` that sees this environment's packages less its hookline
    plugins; returns its interpreter."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    view = parent_packages_without_plugins(root / "parent-site")
    (Path(purelib) / "parent_environment.pth").write_text(
        f"import site; site.addsitedir({str(view)!r})\n"
    )
    return python


def pip_install(python: Path, *arguments: str) -> None:
    """``pip install`` into the venv of ``python``, offline, with this environment's pip."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index",
         "--no-deps", "--no-build-isolation", *arguments],
        check=True,
    )


def run(
    python: Path, arguments: Sequence[str], cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGUMENTS`` with no HOOKLINE_* variable from this process."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    return subprocess.run(
        [str(python), *arguments], capture_output=True, text=True, env=environment, cwd=cwd,
        check=False, timeout=timeout,
    )
