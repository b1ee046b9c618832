"""SIGTERM, SIGUSR1 and SIGINT end a run like a requested stop, with a checkpoint that resumes
the interrupted epoch exactly; a second signal stops at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hookline import Callback, Model, PluginManager
from hookline.backends.tiny import blobs

REPO = Path(__file__).resolve().parents[1]
SLOW = "tests.sample_plugins.slow_recipe:SlowDigits"


class SignalAt(Callback):
    """Sends this process ``number`` at the end of batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int, number: int = signal.SIGTERM) -> None:
        self.at, self.number = (epoch, batch), number

    def on_train_batch_end(self, trainer, batch_idx):
        if (trainer.epoch, batch_idx) == self.at:
            signal.raise_signal(self.number)


class Heard(Callback):
    def __init__(self) -> None:
        self.epoch_ends: list[int] = []

    def on_fit_epoch_end(self, trainer):
        self.epoch_ends.append(trainer.epoch)


def train(backend, project: Path, *plugins: object, **settings: object):
    model = Model(backend.make_task(accumulate_grad_batches=2, dropout=0.2), list(plugins),
                  manager=PluginManager())
    model.train(
        backend.shuffled(*blobs(48, seed=7), size=4, seed=7), epochs=4, project=str(project),
        name="run", plots=False, verbose=False, progress=False, resources=False, **settings,
    )
    return model


def test_a_sigterm_stops_at_a_step_with_a_checkpoint_that_resumes_exactly(
    backend, tmp_path, capsys
):
    expected = backend.weights(train(backend, tmp_path / "full").task)
    heard = Heard()
    # batch 4 of epoch 1 is mid-accumulation (steps every 2 batches): it stops after batch 5
    model = train(backend, tmp_path / "part", SignalAt(1, 4), heard)
    trainer = model.trainer
    assert trainer.interrupted
    assert trainer.stop_reason == "stopped by SIGTERM"
    assert heard.epoch_ends == [0]  # the unfinished epoch got no end
    assert "SIGTERM received: stopping after the current step" in capsys.readouterr().err
    run = tmp_path / "part" / "train" / "run"
    progress = backend.load_checkpoint(run / "weights" / "last.pt")["progress"]
    assert (progress["epoch"], progress["batches_done"]) == (1, 6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ended"] == "interrupted: stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back
    resumed = backend.weights(train(backend, tmp_path / "part", resume="auto").task)
    assert resumed.keys() == expected.keys()
    for name, value in expected.items():
        assert np.array_equal(resumed[name], value), name


def test_a_second_signal_stops_at_once(backend, tmp_path):
    class Twice(Callback):
        def on_train_batch_end(self, trainer, batch_idx):
            if (trainer.epoch, batch_idx) == (0, 1):
                signal.raise_signal(signal.SIGUSR1)
                signal.raise_signal(signal.SIGUSR1)

    with pytest.raises(SystemExit) as stopped:
        train(backend, tmp_path, Twice())
    assert stopped.value.code == 128 + signal.SIGUSR1
    summary = json.loads((tmp_path / "train" / "run" / "summary.json").read_text())
    assert summary["ended"].startswith("failed: SystemExit")


# -- a real `hookline train` process ----------------------------------------------------------


def run_hookline(*words: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookline", *words], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=300,
    )


COMMON = ("epochs=3", "plots=False", "progress=False", "resources=False", "--no-plugins")


@pytest.mark.slow
def test_sigterm_to_hookline_train_checkpoints_mid_epoch_and_resume_matches(tmp_path):
    torch = pytest.importorskip("torch")
    from tests.test_torch_backend import load_torch_checkpoint

    (tmp_path / "full").mkdir()
    full = run_hookline("train", f"recipe={SLOW}", *COMMON, cwd=tmp_path / "full")
    assert full.returncode == 0, full.stderr

    part = tmp_path / "part"
    part.mkdir()
    marker = part / "marker"
    process = subprocess.Popen(
        [sys.executable, "-m", "hookline", "train", f"recipe={SLOW}", *COMMON], cwd=part,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOOKLINE_TEST_MARKER": str(marker)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # the marked batch waits for the signal: it lands there, however late this test runs
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "hookline train: stopped by SIGTERM at step" in stderr
    run = part / "runs" / "train" / "exp"
    assert json.loads((run / "summary.json").read_text())["ended"] == (
        "interrupted: stopped by SIGTERM"
    )
    progress = load_torch_checkpoint(run / "weights" / "last.pt")["progress"]
    assert (progress["epoch"], progress["batches_done"]) == (1, 11)  # after batch 10

    # the checkpoint names its recipe, but hookline imports it only when told again
    last = "resume=runs/train/exp/weights/last.pt"
    refused = run_hookline("train", last, "--no-plugins", cwd=part)
    assert refused.returncode == 2
    assert "never imports code that a checkpoint names: pass recipe=" in refused.stderr
    resumed = run_hookline("train", last, f"recipe={SLOW}", "--no-plugins", cwd=part)
    assert resumed.returncode == 0, resumed.stderr
    expected = load_torch_checkpoint(tmp_path / "full" / "runs" / "train" / "exp" / "weights"
                                     / "last.pt")["task"]["model"]
    actual = load_torch_checkpoint(run / "weights" / "last.pt")["task"]["model"]
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
