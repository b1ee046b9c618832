"""pluggy's own test suite, run with hookline's manager in place of pluggy's.

The suite of the installed pluggy version comes from its source archive on the package
registry.  A small pytest plugin puts a subclass of hookline's manager where pluggy's tests take
``PluginManager`` from; the only failures allowed are hookline's deliberate refusal of a hook
outside its catalog, each recognised by its message.  Without the registry the test says so
and is skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: hookline's refusal of an implementation of a hook outside its catalog, as pytest reports it.
UNKNOWN_HOOK = re.compile(
    r"^hookline\.manager\.errors\.PluginValidationError: plugin '[^']*': '[^']*' "
    r"(implements '[^']*', which )?is not a hookline hook; "
)

#: Put hookline's manager where pluggy's tests find pluggy's (loaded with ``-p``).
SWAP_PLUGIN = '''
"""Run pluggy's tests with hookline's plugin manager in place of pluggy's."""

import pluggy
import pluggy._manager

from hookline.manager import PluginManager


class HooklineManager(PluginManager):
    """hookline's manager, built the way pluggy's tests build pluggy's."""

    def __init__(self, project_name):
        super().__init__()
        self.project_name = project_name


pluggy.PluginManager = HooklineManager
pluggy._manager.PluginManager = HooklineManager
'''

#: pip's words for a registry it cannot reach.
UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|Max retries exceeded|ConnectTimeout|"
    r"ReadTimeout|ProxyError|Could not fetch URL|No matching distribution found|"
    r"Could not find a version that satisfies",
)


def download_sdist(version: str, folder: Path) -> Path:
    """pluggy ``version``'s source archive, downloaded into ``folder``; skips the test when the
    package registry cannot be reached."""
    command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
               "--retries", "1", "--timeout", "20", "--disable-pip-version-check",
               f"pluggy=={version}", "-d", str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the package registry did not answer `pip download pluggy=={version}`")
    archives = sorted(folder.glob("pluggy-*.tar.gz"))
    if done.returncode == 0 and archives:
        return archives[0]
    output = done.stdout + done.stderr
    said = [line.strip() for line in output.splitlines() if UNREACHABLE.search(line)]
    if said:
        pytest.skip(f"the package registry cannot be reached (`pip download "
                    f"pluggy=={version}`): {said[0][:300]}")
    raise AssertionError(f"`pip download pluggy=={version}` failed:\n{output}")


def extract_suite(archive: Path, destination: Path) -> Path:
    """Extract the archive's ``testing/`` and ``tox.ini`` (its pytest settings) only, as
    plain files; returns the folder that holds them."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        top = members[0].name.split("/")[0]
        for member in members:
            relative = member.name.removeprefix(f"{top}/")
            wanted = relative == "tox.ini" or relative.startswith("testing/")
            if not (wanted and member.isfile()) or ".." in Path(relative).parts:
                continue
            source = tar.extractfile(member)
            assert source is not None
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
    return destination


def failures(report: Path) -> tuple[int, dict[str, str]]:
    """The number of tests a JUnit XML report counts, and each failed or erred test's id with
    its message."""
    root = ElementTree.parse(report).getroot()
    cases = list(root.iter("testcase"))
    failed = {}
    for case in cases:
        for problem in (*case.findall("failure"), *case.findall("error")):
            failed[f"{case.get('classname')}::{case.get('name')}"] = problem.get("message") or ""
    return len(cases), failed


def test_pluggys_own_suite_passes_with_hooklines_manager(tmp_path):
    version = importlib.metadata.version("pluggy")
    archive = download_sdist(version, tmp_path / "download")
    suite = extract_suite(archive, tmp_path / "pluggy")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "hookline_swap.py").write_text(textwrap.dedent(SWAP_PLUGIN))
    report = tmp_path / "report.xml"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(plugins), *filter(None, [os.environ.get("PYTHONPATH")])]
    )}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "hookline_swap", "-p", "no:cacheprovider",
         "-q", "--junitxml", str(report), "testing"],
        cwd=suite, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert report.exists(), f"pluggy's suite did not run:\n{done.stdout}\n{done.stderr}"
    ran, failed = failures(report)
    unexpected = {test: message for test, message in failed.items()
                  if not UNKNOWN_HOOK.match(message)}
    assert ran > 100, f"only {ran} tests ran:\n{done.stdout[-4000:]}"
    assert not unexpected, (
        f"pluggy {version}'s own tests fail with hookline's manager, other than on hooks outside "
        "hookline's catalog:\n" + "\n".join(f"{test}: {message[:500]}"
                                            for test, message in unexpected.items())
    )
