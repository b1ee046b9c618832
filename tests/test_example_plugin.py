"""The example third-party plugin (``examples/hookline-epoch-timer``) is tested with the
plugin-author kit: pip-installed into a fresh virtual environment, its own test suite (which
uses hookline's pytest fixtures on each backend and from the command line) passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.venvs import fresh_venv, pip_install, run

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hookline-epoch-timer"


def test_the_example_plugin_passes_its_own_tests_with_the_kit(tmp_path):
    python = fresh_venv(tmp_path)
    pip_install(python, str(EXAMPLE))
    result = run(python, ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout  # 2 backends, the recorder, 2 command-line runs
