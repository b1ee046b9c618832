"""The overhead benchmark runs from one command and reports every contender (not timings)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


def test_quick_benchmark_reports_every_contender(tmp_path):
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(output)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    expected = {"raw", "hookline-bare", "hookline-defaults"}
    if importlib.util.find_spec("lightning") is not None:
        expected |= {"lightning-bare", "lightning-defaults"}
    if importlib.util.find_spec("ignite") is not None:
        expected |= {"ignite-bare", "ignite-handlers"}
    if importlib.util.find_spec("jax") is not None:
        expected |= {
            "raw-jax", "hookline-jax-bare", "hookline-jax-grad-norm", "hookline-jax-defaults"
        }
    assert set(results["steps"]) == expected
    for name, row in results["steps"].items():
        assert row["step_us"] > 0, name
        assert f"\n{name} " in result.stdout  # printed side by side, too
    for baseline in {"raw", "raw-jax"} & set(results["steps"]):
        raw = results["steps"][baseline]
        assert (raw["ratio"], raw["overhead_us"], raw["per_run_ms"], raw["per_step_us"],
                raw["step_ratio"]) == (1, 0, 0, 0, 1)
    micro = results["micro"]
    for implementations in (0, 1, 10):
        assert micro[f"hookline dispatch, {implementations} impl"] > 0
        assert micro[f"pluggy direct, {implementations} impl"] > 0
    assert "filtered hook, a step it is not due (ns/step)" in micro
    assert micro["hook testing the step itself (ns/step)"] > 0
    assert micro["pluggy calls for empty hooks in a run"] == 0
    assert micro["import hookline (ms)"] > 0
    assert micro["discover 50 entry-point plugins (ms)"] > 0
    for command in ("--help", "hooks", "plugins", "settings"):
        assert micro[f"hookline {command} (ms)"] > 0


def test_quick_demo_benchmark_times_both_contenders_on_the_same_work(tmp_path):
    output = tmp_path / "demo.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT.with_name("demo.py")), "--quick", "--json", str(output)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert set(results["medians"]) == {"plain-pytorch", "hookline-train"}
    assert all(value > 0 for value in results["medians"].values())
    assert results["ratio"] == pytest.approx(
        results["medians"]["hookline-train"] / results["medians"]["plain-pytorch"]
    )
    # the same data, split, model, seed and optimizer: the same model comes out
    # (the accuracy's last digits differ: float32 batch means against one float64 division)
    assert results["accuracy"]["plain-pytorch"] == pytest.approx(
        results["accuracy"]["hookline-train"], abs=1e-6
    )
    assert "hookline train / plain script: " in result.stdout


def test_quick_bridge_benchmark_reports_each_installed_host_with_and_without_its_bridge(
    tmp_path,
):
    output = tmp_path / "bridges.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT.with_name("bridges.py")), "--quick", "--json", str(output)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = json.loads(output.read_text())["steps"]
    hosts = {"hf": "transformers", "lightning": "lightning", "keras": "keras"}
    expected = set()
    for host, module in hosts.items():
        if importlib.util.find_spec(module) is not None:
            expected |= {host, f"{host}+hookline"}
    assert set(steps) == expected
    for name, row in steps.items():
        assert row["run_s"] > 0, name
        assert f"\n{name} " in result.stdout
        if name.endswith("+hookline"):
            assert f"{name}: a further step costs" in result.stdout
        else:
            assert (row["step_ratio"], row["run_ratio"]) == (1.0, 1.0)

