"""Distributed training with real torchrun processes: 2 ranks, CPU, gloo."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from hookline import PluginManager, Validator  # noqa: E402
from hookline.backends.torch.demo import DigitsRecipe  # noqa: E402
from hookline.settings import Options  # noqa: E402
from tests.test_torch_backend import load_torch_checkpoint as load_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow

JOB = Path(__file__).with_name("distributed_job.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(*words: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*TORCHRUN, *words], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def records(folder: Path, rank: int) -> list[dict]:
    """A rank's epoch records, without the resource figures (rank zero's own process, sampled
    on rank zero only: a figure to watch, not one that ranks agree on)."""
    entries = [json.loads(line) for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()]
    for entry in entries:
        resources = [name for name in entry["metrics"] if name.startswith("resources/")]
        assert bool(resources) == (rank == 0)
        for name in resources:
            del entry["metrics"][name]
    return entries


def test_two_ranks_train_the_demo_to_the_bound_and_only_rank_zero_writes(tmp_path):
    result = torchrun("-m", "hookline", "train", cwd=tmp_path)
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 20  # printed by rank zero alone
    accuracy = float(re.search(r"val/accuracy (\S+)", epoch_lines[-1]).group(1))
    assert accuracy >= 0.95
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    written = sorted(str(path.relative_to(tmp_path)) for path in files)
    assert written == [
        f"runs/train/exp/{name}" for name in (
            "args.yaml", "metrics.jsonl", "results.csv", "results.png", "summary.json",
            "weights/best.pt", "weights/last.pt",
        )
    ]
    assert result.stdout.count("\ntraining finished after 20/20 epochs") == 1


def test_metrics_agree_across_ranks_and_are_the_mean_over_all_samples(tmp_path):
    f1 = importlib.util.find_spec("torchmetrics") is not None
    torchrun(str(JOB), "runs", "record", "--epochs", "3", *(["--f1"] if f1 else []),
             cwd=tmp_path)
    rank0, rank1 = records(tmp_path / "record", 0), records(tmp_path / "record", 1)
    assert rank0 == rank1
    assert [entry["epoch"] for entry in rank0] == [0, 1, 2]
    # the final weights, validated by one process on the whole validation split
    recipe = DigitsRecipe()
    options = Options()
    recipe.hookline_add_options(options)
    settings = options.resolve({})
    checkpoint = load_checkpoint(tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt")
    task = recipe.task_from_weights(settings, checkpoint["task"])
    _, val = recipe.data(settings)
    alone = Validator(task, manager=PluginManager()).validate(val)
    for name in ("val/loss", "val/accuracy"):
        assert rank0[-1]["metrics"][name] == pytest.approx(alone[name], rel=1e-5), name
    if f1:  # synced by torchmetrics over the ranks: the F1 of the whole split, on both
        from sklearn.metrics import f1_score

        inputs, labels = next(iter(DataLoader(val.dataset, batch_size=len(val.dataset))))
        with torch.no_grad():
            predicted = task.model(inputs).argmax(dim=1).numpy()
        expected = f1_score(labels.numpy(), predicted, average="macro")
        assert rank0[-1]["metrics"]["val/f1"] == pytest.approx(expected, abs=1e-6)
    final = json.loads((tmp_path / "record" / "final0.json").read_text())
    assert final["world_size"] == 2


def test_a_stop_on_one_rank_stops_both_at_the_same_step(tmp_path):
    torchrun(
        str(JOB), "runs", "record", "--stop-on-rank", "1", "--stop-at-step", "30",
        cwd=tmp_path, timeout=120,
    )
    finals = [json.loads((tmp_path / "record" / f"final{r}.json").read_text()) for r in (0, 1)]
    assert finals[0]["global_step"] == finals[1]["global_step"] == 30
    assert finals[1]["stop_reason"] == "asked on rank 1"
    assert finals[0]["stop_reason"] == "a stop was requested on another process"
    assert records(tmp_path / "record", 0) == records(tmp_path / "record", 1)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts ranks in their own sessions,
    so killing its process group would leave them running)."""
    try:
        parent = psutil.Process(pid)
        processes = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


@contextlib.contextmanager
def launched(*words: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """torchrun started in the background; its whole tree is killed on the way out, so that a
    test that fails or times out leaves no rank behind."""
    process = subprocess.Popen(
        [*TORCHRUN, *words], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield process
    finally:
        kill_tree(process.pid)
        process.wait(timeout=60)


def test_a_killed_two_rank_run_resumes_from_its_last_checkpoint(tmp_path):
    process = subprocess.Popen(
        [*TORCHRUN, str(JOB), "runs", "record", "--epochs", "6", "--save-every-n-steps", "5"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("saved ") and int(line.split()[1]) >= 40:
            kill_tree(process.pid)
            break
    process.wait(timeout=60)
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    killed_at = load_checkpoint(last)["progress"]
    assert 40 <= killed_at["global_step"] < 6 * 23
    running = psutil.process_iter(["cmdline"])
    survivors = [p for p in running if str(JOB) in (p.info["cmdline"] or [])]
    assert not survivors, "a rank outlived the kill"
    torchrun(
        str(JOB), "runs", "record", "--epochs", "6", "--resume", str(last), cwd=tmp_path
    )
    finals = [json.loads((tmp_path / "record" / f"final{r}.json").read_text()) for r in (0, 1)]
    assert finals[0] == finals[1]
    assert (finals[0]["epoch"], finals[0]["global_step"]) == (5, 6 * 23)
    assert load_checkpoint(last)["progress"]["epoch"] == 6


#: How long every rank may take to exit after one rank fails (README, Distributed training).
FAILURE_BOUND_S = 60


def test_a_failure_on_one_rank_ends_every_rank_within_the_bound(tmp_path):
    started = time.monotonic()
    with launched(str(JOB), "runs", "record", "--epochs", "5", "--raise-on-rank", "1",
                  "--raise-at-epoch", "2", cwd=tmp_path) as process:
        _, stderr = process.communicate(timeout=FAILURE_BOUND_S + 120)
    # time from the start: two epochs of training, then the failure and the exits
    elapsed = time.monotonic() - started
    assert process.returncode != 0
    assert "RuntimeError: a plugin failed on rank 1 at epoch 2" in stderr
    assert elapsed < FAILURE_BOUND_S, f"{elapsed:.0f} s: {stderr[-3000:]}"
    epochs_done = [json.loads(line)["epoch"] for line in
                   (tmp_path / "record" / "rank0.jsonl").read_text().splitlines()]
    assert epochs_done == [0, 1]  # rank zero stopped where rank one failed


def test_a_sigterm_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    record = tmp_path / "record"
    with launched(str(JOB), "runs", "record", "--epochs", "20", cwd=tmp_path) as process:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (record / "pid1").exists() and (record / "rank0.jsonl").exists():
                break  # both ranks train, and an epoch is done
            time.sleep(0.05)
        os.kill(int((record / "pid1").read_text()), signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    finals = [json.loads((record / f"final{rank}.json").read_text()) for rank in (0, 1)]
    assert finals[0]["global_step"] == finals[1]["global_step"]
    assert finals[1]["stop_reason"] == "stopped by SIGTERM"
    assert finals[0]["stop_reason"] == "interrupted on another process"
    assert finals[0]["interrupted"]
    assert finals[1]["interrupted"]
    last = load_checkpoint(tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt")
    assert last["progress"]["global_step"] == finals[0]["global_step"]
