"""The built-in control plugins run through the Task protocol alone: a task without torch is
trained, checkpointed mid-epoch, killed and resumed exactly in a process where torch, numpy
and JAX cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hookline
from hookline import PluginManager, Trainer, UserError
from hookline.plugins.lr_scheduler import LRScheduler
from hookline.testing import LinearRegressionTask
from tests.conftest import TRUE_WEIGHT, regression_batches

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


class RateHidingTask(LinearRegressionTask):
    """A task that keeps its learning rate to itself (as a plain Optax optimizer does)."""

    def learning_rates(self) -> list[float]:
        return []


def hiding_task() -> RateHidingTask:
    return RateHidingTask(n_features=len(TRUE_WEIGHT), lr=0.1)


def test_a_task_that_hides_its_rate_trains_unreported_and_refuses_a_schedule():
    epochs = []
    trainer = Trainer(hiding_task(), [LRScheduler()], manager=PluginManager())
    trainer.add_callback("on_fit_epoch_end", lambda metrics: epochs.append(dict(metrics)))
    with pytest.warns(UserWarning, match="exposes no learning rate: lr is not reported"):
        trainer.fit(regression_batches(8, 4), epochs=2)
    assert len(epochs) == 2
    assert not any("lr" in metrics for metrics in epochs)
    for plugin, settings, asked in (
        (LRScheduler(), {"schedule": "step"}, "schedule=step"),
        (LRScheduler(), {"warmup_steps": 3}, "warmup_steps=3"),
        (LRScheduler(lambda t: 0.5 ** t), {}, "lr_lambda"),
    ):
        trainer = Trainer(hiding_task(), [plugin], manager=PluginManager())
        with pytest.raises(UserError, match=f"lr_scheduler: {asked} needs the task's learning "
                                            "rates, and it exposes none"):
            trainer.fit(regression_batches(8, 4), epochs=2, **settings)
        assert trainer.global_step == 0
