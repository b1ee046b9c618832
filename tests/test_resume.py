"""Exact resume: a run killed at any instant and resumed from its last checkpoint ends with the
same weights, early-stopping counters and best-checkpoint record as an uninterrupted run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hookline import PluginManager, Trainer
from hookline.backends.tiny import blobs
from hookline.plugins.checkpoint import ModelCheckpoint
from hookline.plugins.time_limit import TimeLimit
from hookline.testing import backends

JOB = Path(__file__).with_name("resume_job.py")


@pytest.fixture(scope="module", params=backends.NAMES)
def job_backend(request: pytest.FixtureRequest) -> backends.TorchBackend | backends.JaxBackend:
    """The backend the job trains with (each in turn, where installed)."""
    if not backends.available(request.param):
        pytest.skip(f"the {request.param} backend is not installed")
    return backends.backend(request.param)


def job(backend, save_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(JOB), str(save_dir), "--backend", backend.name, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes]) -> None:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()[-3000:]


def result(save_dir: Path) -> dict:
    """What the job wrote at its end: weights, plugin states, epoch, steps, stop reason."""
    with np.load(save_dir / "final.npz") as weights:
        model = {name: weights[name] for name in weights.files}
    return {"model": model, **json.loads((save_dir / "final.json").read_text())}


def resume(backend, save_dir: Path, *extra: str) -> dict:
    last = save_dir / "weights" / "last.pt"
    finish(job(backend, save_dir, *(["--resume", str(last)] if last.exists() else []), *extra))
    return result(save_dir)


#: How the job writes its checkpoints: in the loop, or in the background (async_checkpoint).
MODES = {"sync": (), "async": ("--async-checkpoint",)}


def assert_same_weights(result: dict, reference: dict) -> None:
    assert result.keys() == reference.keys()
    for name, value in reference.items():
        assert np.array_equal(result[name], value), name


def assert_same_run(result: dict, reference: dict) -> None:
    assert_same_weights(result["model"], reference["model"])
    assert result["plugins"] == reference["plugins"]
    assert (result["epoch"], result["global_step"], result["stop_reason"]) == (
        reference["epoch"], reference["global_step"], reference["stop_reason"]
    )


@pytest.fixture(scope="module")
def reference(job_backend, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run's result."""
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    finish(job(job_backend, save_dir))
    return result(save_dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "trial"), [("sync", 0), ("sync", 1), ("sync", 2), ("async", 3), ("async", 4)]
)
def test_killed_at_a_random_step_resumes_bit_exactly(
    job_backend, reference, tmp_path, mode, trial
):
    """Also with asynchronous checkpoints: ``saved STEP`` comes once the background write of
    STEP is complete, the kill lands wherever the next write (or the loop) is, and the
    uninterrupted run's result is the synchronous one."""
    target = random.Random(trial).randrange(5, reference["global_step"] - 10)
    process = job(job_backend, tmp_path, *MODES[mode])
    assert process.stdout is not None
    for line in process.stdout:  # "saved STEP" after each last.pt
        if int(line.split()[1]) >= target:
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = job_backend.load_checkpoint(tmp_path / "weights" / "last.pt")["progress"]
    assert target <= killed_at["global_step"] < reference["global_step"]
    assert_same_run(resume(job_backend, tmp_path, *MODES[mode]), reference)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_killed_while_writing_a_checkpoint_keeps_the_previous_one_and_resumes(
    job_backend, reference, tmp_path, mode
):
    """The job stops the write of step 30's file halfway and waits (``writing 30``), so the
    kill lands during the write however late this test gets a core.  Asynchronous: in the
    background thread (the loop has gone on, and waits for it at step 31's save)."""
    process = job(job_backend, tmp_path, "--stall-at-step", "30", *MODES[mode])
    assert process.stdout is not None
    assert process.stderr is not None
    watchdog = threading.Timer(300, process.kill)  # a job that never says "writing" ends
    watchdog.start()
    try:
        for line in process.stdout:  # "saved STEP" lines, then "writing 30"
            if line.startswith(b"writing"):
                break
    finally:
        watchdog.cancel()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-3000:]
    weights = tmp_path / "weights"
    assert large_partial_file(weights), "the kill did not land during a checkpoint write"
    last = job_backend.load_checkpoint(weights / "last.pt")
    assert last["progress"]["global_step"] == 29  # the step before the one being written
    assert "ballast" not in last
    assert_same_run(resume(job_backend, tmp_path, *MODES[mode]), reference)
    assert not list(weights.glob(".*.tmp")), "the interrupted write was not cleaned up"


def large_partial_file(folder: Path) -> bool:
    """Whether the ballast checkpoint (200 MB) was cut short while streaming into its file: a
    large temporary file."""
    return any(partial.stat().st_size > 10_000_000 for partial in folder.glob(".*.tmp"))


class Crash(Exception):
    pass


def test_resuming_mid_epoch_in_process_matches_an_uninterrupted_run(backend, tmp_path):
    """Same guarantee without subprocesses: crash at step 7 of 4-step epochs, resume."""

    def data():
        return backend.shuffled(*blobs(64, seed=5), size=16, seed=3)

    def trainer(**checkpoint: object) -> Trainer:
        plugins = [ModelCheckpoint(save_every_n_steps=1, filename="step", **checkpoint)]
        return Trainer(backend.make_task(dropout=0.2), plugins, manager=PluginManager())

    full = trainer()
    full.fit(data(), epochs=3, save_dir=tmp_path / "full")
    crashing = trainer()

    def crash(trainer):
        if trainer.global_step == 7:
            raise Crash

    crashing.add_callback("on_train_batch_end", crash)
    with pytest.raises(Crash):
        crashing.fit(data(), epochs=3, save_dir=tmp_path / "part")
    progress = backend.load_checkpoint(tmp_path / "part" / "weights" / "last.pt")["progress"]
    assert (progress["epoch"], progress["batches_done"], progress["global_step"]) == (1, 2, 6)
    resumed = trainer(resume=str(tmp_path / "part" / "weights" / "last.pt"))
    resumed.fit(data(), epochs=3, save_dir=tmp_path / "part")
    assert resumed.global_step == full.global_step == 12
    assert_same_weights(backend.weights(resumed.task), backend.weights(full.task))
    assert resumed.metrics["train/loss"] == full.metrics["train/loss"]


def test_time_limit_stops_within_the_budget_with_a_checkpoint_that_resumes_the_run(
    backend, tmp_path
):
    loader = backend.batches(320, 16, seed=5)
    # 20 batches of >= 10 ms an epoch: the budget ends by epoch 15.  The limited run's task
    # compiles afresh on JAX (0.5 s, over a second on a loaded machine): a budget of 3 s leaves
    # room for it, which the plugin cannot stop before
    budget, epochs = 3.0, 30
    full = Trainer(backend.make_task(), manager=PluginManager())  # also pays one-off imports
    full.fit(loader, epochs=epochs)
    fit_started: list[float] = []

    limited = Trainer(
        backend.make_task(), [ModelCheckpoint(), TimeLimit(budget)], manager=PluginManager()
    )
    limited.add_callback(
        "on_pretrain_routine_start", lambda trainer: fit_started.append(time.monotonic())
    )
    limited.add_callback("on_train_batch_end", lambda trainer: time.sleep(0.01))
    limited.fit(loader, epochs=epochs, save_dir=tmp_path)
    assert time.monotonic() - fit_started[0] < budget  # the epoch's end and checkpoint included
    assert limited.stop_reason.startswith("time limit:")
    assert 0 < limited.global_step < epochs * len(loader)
    progress = backend.load_checkpoint(tmp_path / "weights" / "last.pt")["progress"]
    assert progress["global_step"] == limited.global_step

    resumed = Trainer(
        backend.make_task(), [ModelCheckpoint(resume=str(tmp_path / "weights" / "last.pt"))],
        manager=PluginManager(),
    )
    resumed.fit(loader, epochs=epochs, save_dir=tmp_path)
    assert resumed.global_step == full.global_step == epochs * len(loader)
    assert_same_weights(backend.weights(resumed.task), backend.weights(full.task))
