"""Elastic restarts with real torchrun processes (2 ranks, CPU, gloo, DDP): one rank SIGKILLed
mid-epoch, torchrun restarts the group, ``resume=auto`` carries on from the run's last
checkpoint, and the run ends with the weights of a run that was never interrupted.

Why bit for bit: the checkpoint holds the model, AdamW's moments and step, every random
state, and the data's position; each rank's batches are a function of (seed, epoch, rank)
(DistributedSampler), the gradient all-reduce of two ranks adds two numbers (commutative, so
exact), and CPU kernels are deterministic for the same shapes on one thread.  So the replayed
steps repeat the lost ones exactly, and ``torch.equal`` holds for every tensor, and every
metric is equal too when the checkpoint was taken at an epoch end.  From a checkpoint taken
mid-epoch the weights are still equal bit for bit (the random state rank zero saved is rank
one's too: both draw alike), but the resumed epoch's ``train/loss`` is not: it is the mean of
both ranks' running sums, and a one-file checkpoint holds rank zero's alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import subprocess  # noqa: E402

from tests.test_torch_backend import load_torch_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow

JOB = Path(__file__).with_name("elastic_job.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
#: The digits demo on 2 ranks: 1,438 training rows, 32 per rank and batch: 23 steps an epoch.
STEPS_PER_EPOCH = 23


def train(*words: str, cwd: Path, record: Path, launcher: list[str], **env: str) -> str:
    """``hookline train`` under ``launcher`` with the recording plugin and no installed one
    (an installed plugin's wall-clock metric would differ between two runs); returns its
    output."""
    result = subprocess.run(
        [*launcher, "-m", "hookline", "train", "--no-plugins", "epochs=3", *words,
         f"callbacks={JOB}:Record{',' + str(JOB) + ':KillOnce' if env else ''}"],
        cwd=cwd, capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HOOKLINE_TEST_RECORD": str(record), **env},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def epoch_rows(run: Path) -> list[tuple[int, int, dict]]:
    """``(epoch, step, metrics)`` of each epoch in ``metrics.jsonl`` (1-based epochs), without
    the resource figures (rank zero's own process)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        (row["epoch"], row["step"], {key: value for key, value in row["metrics"].items()
                                     if not key.startswith("resources/")})
        for row in rows if row["phase"] == "epoch"
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """A run of the same command that nothing interrupts (its run directory)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    train("name=job", cwd=folder, record=folder / "record", launcher=TORCHRUN)
    return folder


@pytest.mark.parametrize(
    ("saves", "kill_at", "resumed_at"),
    [
        ((), 30, STEPS_PER_EPOCH),  # the checkpoint of epoch 1's end, 7 steps before the kill
        (("save_every_n_steps=5",), 32, 30),  # a checkpoint mid-epoch, 2 steps before
    ],
    ids=["epoch-end checkpoint", "mid-epoch checkpoint"],
)
def test_a_rank_killed_mid_epoch_restarts_and_ends_with_the_uninterrupted_weights(
    tmp_path, uninterrupted, saves, kill_at, resumed_at
):
    record = tmp_path / "record"
    started = time.monotonic()
    output = train(
        "name=job", "resume=auto", *saves, cwd=tmp_path, record=record,
        launcher=[*TORCHRUN, "--max-restarts=2"], HOOKLINE_TEST_KILL=f"1:{kill_at}",
    )
    elapsed = time.monotonic() - started
    assert (record / "killed").exists()  # rank 1 died on the first attempt
    starts = [json.loads(line) for line in (record / "starts.jsonl").read_text().splitlines()]
    by_attempt = {(entry["attempt"], entry["rank"]): entry for entry in starts}
    assert len(by_attempt) == len(starts) == 4  # two attempts of two ranks, no third
    for rank in (0, 1):  # both ranks of the restart loaded the same checkpoint
        assert by_attempt[(0, rank)]["global_step"] == 0
        assert by_attempt[(1, rank)]["global_step"] == resumed_at
        assert by_attempt[(1, rank)]["epoch"] == resumed_at // STEPS_PER_EPOCH
    assert output.count("training finished after 3/3 epochs, 69 steps") == 1

    run, reference = tmp_path / "runs" / "train" / "job", uninterrupted / "runs" / "train" / "job"
    finals = [weights(record / f"final{rank}.pt") for rank in (0, 1)]
    expected = weights(uninterrupted / "record" / "final0.pt")
    assert list(finals[0]) == list(expected)
    for name, value in expected.items():
        assert torch.equal(finals[0][name], value), name
        assert torch.equal(finals[1][name], value), name
    saved = load_torch_checkpoint(run / "weights" / "last.pt")
    saved_reference = load_torch_checkpoint(reference / "weights" / "last.pt")
    assert saved["progress"]["global_step"] == saved_reference["progress"]["global_step"] == 69
    for name, value in saved_reference["task"]["model"].items():
        assert torch.equal(saved["task"]["model"][name], value), name
    rows, reference_rows = epoch_rows(run), epoch_rows(reference)
    assert [row[:2] for row in rows] == [row[:2] for row in reference_rows] == [
        (1, 23), (2, 46), (3, 69)
    ]  # one row per epoch: the killed attempt's epoch 2 never ended
    for (epoch, _, metrics), (_, _, expected_metrics) in zip(rows, reference_rows, strict=True):
        for key, value in expected_metrics.items():
            if saves and key == "train/loss" and epoch == resumed_at // STEPS_PER_EPOCH + 1:
                # the mean of the epoch's losses over both ranks: a one-file checkpoint holds
                # rank zero's running sum alone, which both ranks carry on from
                assert metrics[key] == pytest.approx(value, rel=0.1), (epoch, key)
                continue
            assert metrics[key] == value, (epoch, key)
    print(f"{saves or 'epoch ends'}: killed at step {kill_at}, resumed at {resumed_at}, "
          f"{elapsed:.1f} s with the restart")
