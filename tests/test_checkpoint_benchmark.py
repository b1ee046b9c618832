"""The checkpoint benchmark runs from one command and reports every contender and target (the
structure, not the timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "checkpoints.py"
CONTENDERS = {
    "hookline sync", "hookline async", "torch.save", "torch.save + fsync", "host copy",
    "dcp async_save", "dcp save",
}


def test_quick_checkpoint_benchmark_reports_every_contender_and_target(tmp_path):
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(output)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert set(results["sizes"]) == {"10 MB"}
    row = results["sizes"]["10 MB"]
    assert 9_000_000 < row["state_bytes"] < 11_000_000
    assert set(row["blocked_ms"]) == CONTENDERS
    assert all(value > 0 for value in row["blocked_ms"].values())
    assert row["background_ms"] > 0
    assert set(row["targets"]) == {
        "hookline async / host copy", "hookline sync / torch.save + fsync"}
    for name, target in row["targets"].items():
        assert target["limit"] == 1.5
        assert target["ratio"] > 0
        assert isinstance(target["met"], bool)
        verdict = "met" if target["met"] else "NOT met"
        assert f"{target['ratio']:.2f}x, {verdict}" in result.stdout, name
    loop = results["loop"]
    assert loop["state"] == "10 MB"
    assert loop["step_ms"] > 0
    assert {"sync_per_checkpoint_ms", "async_per_checkpoint_ms"} <= set(loop)
    for name in CONTENDERS:
        assert f"\n{name} " in result.stdout  # the table, printed
    assert "loop cost per checkpoint" in result.stdout
