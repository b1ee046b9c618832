"""JAX across processes: the share of the data each process reads, the runtime's start from
torchrun's environment, and real torchrun runs of the digits-jax demo on 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hookline.backends.arrays import ArrayBatches
from hookline.distributed import LaunchError, coordinator_address

JOB = Path(__file__).with_name("jax_distributed_job.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
#: How long every process may take to exit after one fails (README, Distributed training).
FAILURE_BOUND_S = 60


# -- each process's share of the data ----------------------------------------------------------


def rows_of(batches) -> list[list[int]]:
    return [sorted(int(row) for row in inputs[:, 0]) for inputs, _ in batches]


@pytest.mark.parametrize("rows", [40, 37])
def test_the_shares_of_every_process_make_the_batches_of_one_process(rows):
    inputs = np.arange(rows, dtype=np.float32).reshape(rows, 1)
    alone = ArrayBatches(inputs, np.zeros(rows), 8, shuffle=True, seed=3)
    shared = ArrayBatches(inputs, np.zeros(rows), 8, shuffle=True, seed=3)
    shares = [shared.share(rank, 2) for rank in range(2)]
    for epoch in range(2):
        expected = rows_of(alone)
        shared.load_state_dict({"epoch": epoch})  # each process draws the epoch's order once
        first = rows_of(shares[0])
        shared.load_state_dict({"epoch": epoch})
        second = rows_of(shares[1])
        assert len(first) == len(second) == len(shares[0]) == len(expected)
        assert all(len(part) == 4 for part in first[:-1] + second[:-1])
        assert len(first[-1]) == len(second[-1])  # every process's last batch the same size
        together = [sorted(a + b) for a, b in zip(first, second, strict=True)]
        if rows % 2 == 0:
            assert together == expected
        else:  # padded as DistributedSampler pads: the epoch's first row once more, at the end
            assert together[:-1] == expected[:-1]
            order = np.random.default_rng([3, epoch]).permutation(rows)
            assert together[-1] == sorted([*expected[-1], int(order[0])])


def test_a_share_keeps_the_shuffle_position_of_the_batches_it_came_from():
    batches = ArrayBatches(np.zeros((10, 1)), np.zeros(10), 4, shuffle=True)
    share = batches.share(1, 2)
    list(share)
    assert share.state_dict() == batches.state_dict() == {"epoch": 1}
    share.load_state_dict({"epoch": 5})
    assert batches.epoch == 5


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused():
    with pytest.raises(ValueError, match=r"batch size 9 .* over 2 processes: use a multiple of 2"):
        ArrayBatches(np.zeros((10, 1)), np.zeros(10), 9).share(0, 2)


# -- the runtime's start ------------------------------------------------------------------------


def test_the_coordinator_listens_one_port_above_torchruns_store(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert coordinator_address() == "node0:29501"
    monkeypatch.delenv("MASTER_PORT")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(LaunchError, match="WORLD_SIZE=4 but MASTER_PORT is not set: launch"):
        coordinator_address()


def test_starting_the_runtime_after_a_jax_computation_is_refused_in_one_line(monkeypatch):
    jnp = pytest.importorskip("jax.numpy")
    from hookline.backends.jax import initialize_distributed

    assert initialize_distributed() is False  # one process: nothing to start
    jnp.zeros(1).block_until_ready()  # JAX has computed: too late for its runtime
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(LaunchError, match=r"must start before any JAX computation: call "
                       r"hookline\.backends\.jax\.initialize_distributed\(\) before the model"):
        initialize_distributed()


# -- real processes -----------------------------------------------------------------------------


def hookline(*words: str, cwd: Path, record: Path, launcher: list[str] | None = None,
             timeout: int = 180, **env: str) -> subprocess.CompletedProcess[str]:
    """``hookline train recipe=digits-jax`` with the recording plugin, under ``launcher``."""
    command = [*(launcher or [sys.executable]), "-m", "hookline", "train", "recipe=digits-jax",
               *words]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HOOKLINE_TEST_RECORD": str(record),
                   **env}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=environment, check=False)


def entries(record: Path, rank: int) -> list[dict]:
    lines = (record / f"rank{rank}.jsonl").read_text().splitlines()
    found = [json.loads(line) for line in lines]
    for entry in found:  # rank zero's own process: sampled there alone
        entry["metrics"] = {name: value for name, value in entry["metrics"].items()
                            if not name.startswith("resources/")}
    return found


@pytest.mark.slow
def test_two_processes_train_as_one_process_does_with_the_same_global_batch(tmp_path):
    started = time.monotonic()
    record = tmp_path / "two"
    callbacks = f"callbacks={JOB}:Record"
    result = hookline("epochs=2", callbacks, cwd=tmp_path, record=record, launcher=TORCHRUN)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    two_s = time.monotonic() - started
    # process zero alone printed and wrote; each process fed 16 of each global batch of 32
    assert result.stdout.count("training finished after 2/2 epochs, 90 steps") == 1
    assert "45/45 batches (100%)" in result.stderr  # the progress of each process's share
    written = sorted(str(path.relative_to(tmp_path / "runs")) for path in
                     (tmp_path / "runs").rglob("*") if path.is_file())
    assert written == [
        f"train/exp/{name}" for name in ("args.yaml", "metrics.jsonl", "results.csv",
                                         "results.png", "summary.json", "weights/best.pt",
                                         "weights/last.pt")
    ]
    ranks = [entries(record, rank) for rank in (0, 1)]
    assert ranks[0] == ranks[1]  # the same metrics on every process
    assert [entry["world_size"] for entry in ranks[0]] == [2, 2]
    finals = [np.load(record / f"final{rank}.npz") for rank in (0, 1)]
    assert sorted(finals[0]) == sorted(finals[1])
    for name in finals[0]:  # the replicas never diverge: equal bit for bit
        assert np.array_equal(finals[0][name], finals[1][name]), name

    alone = tmp_path / "one"
    single = hookline("epochs=2", "name=one", callbacks, cwd=tmp_path, record=alone)
    assert single.returncode == 0, single.stderr[-4000:]
    one = entries(alone, 0)
    assert [entry["step"] for entry in one] == [entry["step"] for entry in ranks[0]]
    for mine, theirs in zip(ranks[0], one, strict=True):
        for name, value in theirs["metrics"].items():
            assert mine["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    reference = np.load(alone / "final0.npz")
    for name in reference:  # the same global batches, summed in another order
        np.testing.assert_allclose(finals[0][name], reference[name], rtol=0, atol=1e-5)
    print(f"2 processes: {two_s:.1f} s; both runs: {time.monotonic() - started:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "raise"])
def test_one_process_failing_ends_the_other_within_the_bound(tmp_path, how):
    record = tmp_path / "record"
    callbacks = f"callbacks={JOB}:Record,{JOB}:KillRank"
    result = hookline("epochs=20", callbacks, cwd=tmp_path, record=record, launcher=TORCHRUN,
                      HOOKLINE_TEST_KILL=f"1:20:{how}")
    ended = time.time()
    failed_at = float((record / "failed1").read_text())
    assert result.returncode != 0
    assert ended - failed_at < FAILURE_BOUND_S, result.stderr[-3000:]
    if how == "kill":  # the survivor's collective fails, and says why
        assert "ProcessFailure: process 0 of 2: a collective failed, another process has " \
               "probably died" in result.stderr + result.stdout
    else:  # the failing process's own line; the runtime then ends the other
        assert ("hookline: plugin 'KillRank' failed in on_train_batch_end: RuntimeError: a "
                "plugin failed on rank 1 at step 20") in result.stderr
    assert not (record / "final0.npz").exists()  # no process finished
    print(f"{how}: every process ended {ended - failed_at:.1f} s after the failure")


def free_port_pair() -> int:
    """A port whose successor is free too (the runtime's coordinator listens there)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            try:
                with socket.socket() as second:
                    second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no two consecutive free ports")


@pytest.mark.slow
def test_without_a_launcher_the_runtime_ends_the_survivor_of_a_killed_process(tmp_path):
    """No torchrun to stop the other process: JAX's own heartbeat ends it (hookline shortens
    it to 10 s; JAX's default would hold the survivor about 100 s)."""
    record = tmp_path / "record"
    port = free_port_pair()
    processes = []
    for rank in (0, 1):
        environment = {
            **os.environ, "OMP_NUM_THREADS": "1", "HOOKLINE_TEST_RECORD": str(record),
            "HOOKLINE_TEST_KILL": "1:20:kill", "RANK": str(rank), "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        command = [sys.executable, "-m", "hookline", "train", "recipe=digits-jax", "epochs=20",
                   f"callbacks={JOB}:Record,{JOB}:KillRank"]
        processes.append(subprocess.Popen(
            command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ))
    try:
        _, stderr = processes[0].communicate(timeout=180)
        ended = time.time()
        processes[1].wait(timeout=60)
    finally:
        for process in processes:
            process.kill()
    failed_at = float((record / "failed1").read_text())
    assert processes[1].returncode == -9
    assert processes[0].returncode != 0
    assert "ProcessFailure: process 0 of 2: a collective failed" in stderr
    assert ended - failed_at < FAILURE_BOUND_S, stderr[-3000:]
    print(f"without a launcher: the survivor ended {ended - failed_at:.1f} s after the kill")
