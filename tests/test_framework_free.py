"""The built-in control plugins run through the Task protocol alone: a task without torch is
trained, checkpointed mid-epoch, killed and resumed exactly in a process where torch, numpy
and JAX cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hookline
from hookline.testing import LinearRegressionTask

JOB = Path(__file__).with_name("framework_free_job.py")
REPO = Path(__file__).resolve().parents[1]


def run(run_dir: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(JOB), str(run_dir), mode], capture_output=True, text=True,
        cwd=REPO, timeout=120,
    )


def test_a_task_without_torch_resumes_exactly_from_a_mid_epoch_checkpoint(tmp_path):
    full = run(tmp_path / "full", "full")
    assert full.returncode == 0, full.stderr
    expected = json.loads(full.stdout)
    assert expected["frameworks_loaded"] == []
    assert expected["torch_importable"] is False
    assert expected["stop_reason"].startswith("early stopping: val/loss has not improved")

    crashed = run(tmp_path / "part", "crash")
    assert crashed.returncode == 3, crashed.stderr
    last = tmp_path / "part" / "weights" / "last.pt"
    progress = hookline.load_checkpoint(last, LinearRegressionTask(3))["progress"]
    assert progress["batches_done"] > 0  # the run died in the middle of an epoch
    assert progress["epoch"] < expected["epochs_run"] - 1

    resumed = run(tmp_path / "part", "resume")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    # bit for bit (floats compared by repr), at the same epoch, for the same reason
    assert result == expected
