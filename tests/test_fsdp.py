"""FSDP2 and sharded checkpoints: real torchrun processes on CPU (gloo), and the single-process
parts (a sharded checkpoint read by one process, the restricted ``.metadata`` reader, the
atomic replacement of a checkpoint directory) in this process."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from hookline import PluginManager, Trainer  # noqa: E402
from hookline.backends.torch import TaskSettingError, TorchTask  # noqa: E402
from hookline.backends.torch.distributed import BatchSizeError, shard_loader  # noqa: E402
from hookline.engine import checkpoint_dir, load_checkpoint  # noqa: E402
from hookline.errors import CheckpointError  # noqa: E402
from hookline.plugins.checkpoint import ModelCheckpoint  # noqa: E402
from hookline.plugins.support import checkpoint_dirs  # noqa: E402

JOB = Path(__file__).with_name("fsdp_job.py")
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def torchrun_command(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}"]


def launch(nproc: int, *words: str, cwd: Path) -> subprocess.Popen[str]:
    """The job on ``nproc`` processes (1: no torchrun, a plain process)."""
    command = torchrun_command(nproc) if nproc > 1 else [sys.executable]
    return subprocess.Popen(
        [*command, *words], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=ENV,
    )


def kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        parent = psutil.Process(pid)
        for process in [*parent.children(recursive=True), parent]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)


def run_job(nproc: int, save_dir: Path, *extra: str, ok: bool = True) -> None:
    process = launch(nproc, str(JOB), str(save_dir), *extra, cwd=save_dir.parent)
    try:
        _, stderr = process.communicate(timeout=90)
    finally:
        kill_tree(process.pid)
    if ok:
        assert process.returncode == 0, stderr[-4000:]


def result(save_dir: Path) -> dict:
    with np.load(save_dir / "final.npz") as weights:
        model = {name: weights[name] for name in weights.files}
    return {"model": model, **json.loads((save_dir / "final.json").read_text())}


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[name] - b[name]).max()) for name in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted 2-rank FSDP run (no dropout: comparable across world sizes)."""
    save_dir = tmp_path_factory.mktemp("fsdp") / "reference"
    run_job(2, save_dir, "--export")
    return {**result(save_dir), "dir": save_dir}


@pytest.fixture(scope="module")
def reference_dropout(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted 2-rank FSDP run with dropout (each rank's random state matters)."""
    save_dir = tmp_path_factory.mktemp("fsdp") / "dropout"
    run_job(2, save_dir, "--dropout")
    return result(save_dir)


# -- torchrun ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_fsdp_ranks_match_one_process_and_evaluate_padded_batches(reference, tmp_path):
    alone = tmp_path / "alone"
    run_job(1, alone)
    single = result(alone)
    assert reference["world_size"] == 2
    assert single["world_size"] == 1
    assert reference["global_step"] == single["global_step"] == 36
    assert largest_difference(reference["model"], single["model"]) < 1e-5
    # 97 validation samples in batches of 16: 4 batches on rank 0, 3 (+1 empty) on rank 1;
    # the padding counts for nothing: the metrics are those of one process over all 97
    for name in ("val/loss", "train/loss"):
        assert reference["metrics"][name] == pytest.approx(single["metrics"][name], abs=1e-5)
    assert reference["metrics"]["val/accuracy"] == single["metrics"]["val/accuracy"]
    correct = reference["metrics"]["val/accuracy"] * 97
    assert correct == pytest.approx(round(correct), abs=1e-9)  # a share of 97, not of 112


@pytest.mark.slow
def test_export_gathers_the_shards_into_a_plain_model(reference):
    exported = torch.jit.load(str(reference["dir"] / "model.torchscript"))
    plain = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 2))
    plain.load_state_dict({name: torch.from_numpy(value)
                           for name, value in reference["model"].items()})
    inputs = torch.randn(5, 8)
    with torch.no_grad():
        assert torch.allclose(exported(inputs), plain(inputs), atol=1e-6)


@pytest.mark.slow
def test_a_sharded_checkpoint_is_a_directory_behind_a_link_with_a_header(reference):
    weights = reference["dir"] / "weights"
    last = weights / "last"
    assert last.is_symlink()
    assert os.readlink(last).startswith(".ckpt-s36-")
    files = {path.name for path in last.iterdir()}
    assert files == {".metadata", "__0_0.distcp", "__1_0.distcp", "state.msgpack",
                     "hookline.json"}
    header = checkpoint_dir.read_header(last)
    assert header["format"] == "torch-dcp"
    assert set(header["files"]) == files - {"hookline.json"}
    # every checkpoint replaced the previous one: only linked directories are left
    linked = {os.readlink(path) for path in weights.iterdir() if path.is_symlink()}
    assert {path.name for path in weights.iterdir() if not path.is_symlink()} == linked


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(2))
def test_killed_at_a_random_moment_resumes_bit_for_bit_on_as_many_ranks(
    reference_dropout, tmp_path, trial
):
    target = random.Random(trial).randrange(3, 33)
    save_dir = tmp_path / "run"
    process = launch(2, str(JOB), str(save_dir), "--dropout", cwd=tmp_path)
    assert process.stdout is not None
    try:
        for line in process.stdout:  # "saved STEP" after each weights/last
            if int(line.split()[1]) >= target:
                break
        # a random moment: mid-step, or in the middle of writing the next checkpoint
        time.sleep(random.Random(trial).uniform(0, 0.05))
    finally:
        kill_tree(process.pid)
        process.wait(timeout=30)
    last = save_dir / "weights" / "last"
    killed_at = checkpoint_dir.read_header(last)
    assert killed_at["format"] == "torch-dcp"
    run_job(2, save_dir, "--dropout", "--resume", str(last))
    resumed = result(save_dir)
    assert resumed["global_step"] == reference_dropout["global_step"]
    for name, value in reference_dropout["model"].items():
        assert np.array_equal(resumed["model"][name], value), name
    assert resumed["metrics"] == reference_dropout["metrics"]
    assert resumed["plugins"]["early_stopping"] == reference_dropout["plugins"]["early_stopping"]


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_resumes_on_another_number_of_processes_within_tolerance(
    reference, tmp_path, first, then
):
    save_dir = tmp_path / "run"
    run_job(first, save_dir, "--kill-at-step", "17", ok=False)  # mid-epoch 2 (12 steps each)
    last = save_dir / "weights" / "last"
    state = load_sharded_state(last)
    assert state["world_size"] == first
    assert state["progress"][0]["global_step"] == 17
    run_job(then, save_dir, "--resume", str(last))
    resumed = result(save_dir)
    assert resumed["world_size"] == then
    assert resumed["global_step"] == reference["global_step"]
    assert largest_difference(resumed["model"], reference["model"]) < 1e-5
    for name, value in reference["metrics"].items():
        assert resumed["metrics"][name] == pytest.approx(value, abs=1e-5), name


def load_sharded_state(directory: Path) -> dict:
    from hookline.backends.torch.sharded import read_state

    return read_state(directory)


@pytest.mark.slow
def test_an_asynchronous_sharded_save_resumes_bit_for_bit(reference_dropout, tmp_path):
    save_dir = tmp_path / "run"
    run_job(2, save_dir, "--dropout", "--async-save", "--every", "4", "--kill-at-step", "20",
            ok=False)
    last = save_dir / "weights" / "last"
    step = load_sharded_state(last)["progress"][0]["global_step"]
    assert step in (16, 20)  # the save in flight when rank zero died, or the one before
    run_job(2, save_dir, "--dropout", "--async-save", "--every", "4", "--resume", str(last))
    resumed = result(save_dir)
    for name, value in reference_dropout["model"].items():
        assert np.array_equal(resumed["model"][name], value), name


def hookline(
    cwd: Path, *words: str, nproc: int = 1, status: int = 0
) -> subprocess.CompletedProcess[str]:
    """``hookline WORDS`` in ``cwd``, on ``nproc`` processes (1: no torchrun)."""
    command = torchrun_command(nproc) if nproc > 1 else [sys.executable]
    done = subprocess.run(
        [*command, "-m", "hookline", *words], cwd=cwd, capture_output=True, text=True,
        timeout=90, env=ENV, check=False,
    )
    assert done.returncode == status, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def trained_on_two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``torchrun --nproc_per_node=2 -m hookline train strategy=fsdp``: the run's last."""
    cwd = tmp_path_factory.mktemp("cli")
    hookline(cwd, "train", "strategy=fsdp", "epochs=2", "batch=64", "plots=false", nproc=2)
    return cwd / "runs" / "train" / "exp" / "weights" / "last"


@pytest.mark.slow
def test_hookline_train_strategy_fsdp_writes_a_sharded_checkpoint(trained_on_two_ranks):
    last = trained_on_two_ranks
    assert last.is_symlink()
    assert (last / "hookline.json").is_file()
    header = checkpoint_dir.read_header(last)
    assert header["args"]["strategy"] == "fsdp"
    assert {"__0_0.distcp", "__1_0.distcp"} <= set(header["files"])
    assert (last.parent / "best").is_symlink()


@pytest.mark.slow
def test_one_process_validates_predicts_and_exports_from_the_shards(trained_on_two_ranks):
    last = trained_on_two_ranks
    cwd = last.parents[4]
    val = hookline(cwd, "val", f"weights={last}")
    assert "val/accuracy" in val.stdout + val.stderr
    hookline(cwd, "predict", f"weights={last}")
    assert (cwd / "runs" / "predict" / "exp" / "predictions.csv").is_file()
    hookline(cwd, "export", f"weights={last}", "format=torchscript")
    exported = last.parent / "last.torchscript"
    scripted = torch.jit.load(str(exported))
    assert scripted(torch.zeros(3, 64)).shape == (3, 10)


@pytest.mark.slow
def test_one_process_resumes_the_two_rank_run_on_the_command_line(trained_on_two_ranks):
    last = trained_on_two_ranks
    hookline(last.parents[4], "train", f"resume={last}", "epochs=3")
    state = load_sharded_state(last)
    assert state["world_size"] == 1
    assert state["progress"][0]["epoch"] == 3


# -- one process ---------------------------------------------------------------------------------


def tiny_task(**options) -> TorchTask:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return TorchTask(
        model, nn.functional.cross_entropy, lambda params: torch.optim.AdamW(params, lr=0.01),
        device="cpu", distributed=False, **options,
    )


def tiny_data() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                      generator=torch.Generator().manual_seed(1))


def sharded_run(save_dir: Path, epochs: int = 2, **checkpoint) -> Trainer:
    trainer = Trainer(
        tiny_task(strategy="fsdp"), [ModelCheckpoint(**checkpoint)], manager=PluginManager()
    )
    trainer.fit(tiny_data(), epochs=epochs, save_dir=save_dir)
    return trainer


def test_fsdp_refuses_an_optimizer_instance_in_one_line():
    model = nn.Linear(2, 2)
    with pytest.raises(TaskSettingError, match="needs the optimizer as a factory") as error:
        TorchTask(model, nn.functional.mse_loss, torch.optim.SGD(model.parameters(), 0.1),
                  strategy="fsdp")
    assert "\n" not in str(error.value)
    with pytest.raises(TaskSettingError, match="strategy must be one of"):
        TorchTask(model, nn.functional.mse_loss, strategy="zero3")


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused():
    loader = DataLoader(TensorDataset(torch.zeros(10, 2)), batch_size=33)
    with pytest.raises(BatchSizeError, match=r"batch size 33 .* does not divide among 2") as error:
        shard_loader(loader, 0, 0, 2, global_batch=True)
    assert "\n" not in str(error.value)
    assert shard_loader(loader, 0, 1, 3, global_batch=True).batch_size == 11


def test_a_single_process_writes_and_resumes_a_sharded_checkpoint_exactly(tmp_path):
    full = sharded_run(tmp_path / "full", epochs=3)
    part = sharded_run(tmp_path / "part", epochs=2, save_every_n_steps=1, filename="step")
    last = tmp_path / "part" / "weights" / "last"
    assert last.is_symlink()
    assert (last / ".metadata").is_file()
    resumed = sharded_run(tmp_path / "part", epochs=3, resume=str(last))
    assert resumed.global_step == full.global_step == 12
    assert part.global_step == 8
    for (name, a), (_, b) in zip(resumed.task.model.state_dict().items(),
                                 full.task.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.metrics["train/loss"] == full.metrics["train/loss"]


def test_an_interrupted_directory_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_dir = tmp_path / "run"
    real_header = checkpoint_dirs.write_header
    calls = []

    def header_then_crash(directory, format, args):
        calls.append(directory)
        if len(calls) == 3:  # the third save: its shards are written, then the process "dies"
            raise KeyboardInterrupt
        real_header(directory, format, args)

    monkeypatch.setattr(checkpoint_dirs, "write_header", header_then_crash)
    with pytest.raises(KeyboardInterrupt):
        sharded_run(save_dir, save_every_n_steps=1, filename="step")
    weights = save_dir / "weights"
    last = weights / "last"
    assert (weights / os.readlink(last)) == calls[1]  # the link still names the second save
    assert calls[2].is_dir()
    assert not (calls[2] / "hookline.json").exists()
    with pytest.raises(CheckpointError, match="no complete hookline checkpoint"):
        checkpoint_dir.read_header(calls[2])
    checkpoint = load_checkpoint(last, tiny_task(strategy="fsdp"))
    assert checkpoint["progress"]["global_step"] == 2
    monkeypatch.setattr(checkpoint_dirs, "write_header", real_header)
    sharded_run(save_dir, epochs=3, resume=str(last))  # resumes, and cleans up
    assert not calls[2].exists()


def craft_metadata(directory: Path, marker: Path) -> None:
    """Replace ``.metadata`` with a pickle whose loading writes ``marker``, and fix the digest
    in the header (as an attacker who rewrites the whole directory would)."""

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    (directory / ".metadata").write_bytes(pickle.dumps(Payload()))
    header = json.loads((directory / "hookline.json").read_text())
    header["files"][".metadata"] = checkpoint_dir.file_digest(directory / ".metadata")
    (directory / "hookline.json").write_text(json.dumps(header))


def test_a_crafted_metadata_file_is_refused_and_never_run(tmp_path):
    sharded_run(tmp_path / "run", epochs=1)
    last = tmp_path / "run" / "weights" / "last"
    marker = tmp_path / "code-ran"
    craft_metadata(last.resolve(), marker)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(last, tiny_task(strategy="fsdp"))
    message = str(error.value)
    assert ".metadata" in message
    assert "builtins.exec" in message
    assert "\n" not in message
    assert not marker.exists()
    # the command line: one line, exit 2, nothing run
    done = hookline(tmp_path, "val", f"weights={last}", status=2)
    assert ".metadata" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()
    # the file is live: a general unpickler (DCP's own reader) would have run it
    pickle.loads((last / ".metadata").read_bytes())
    assert marker.read_text() == "ran"


def test_an_altered_shard_is_refused_by_its_digest(tmp_path):
    sharded_run(tmp_path / "run", epochs=1)
    last = tmp_path / "run" / "weights" / "last"
    shard = last / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"__0_0\.distcp.* is corrupt"):
        load_checkpoint(last, tiny_task(strategy="fsdp"))


def test_top_k_and_best_are_directories_and_dropped_ones_are_removed(tmp_path):
    trainer = Trainer(
        tiny_task(strategy="fsdp"),
        [ModelCheckpoint(monitor="train/loss", save_top_k=2, filename="epoch{epoch}")],
        manager=PluginManager(),
    )
    trainer.fit(tiny_data(), epochs=4, save_dir=tmp_path)
    weights = tmp_path / "weights"
    links = sorted(path.name for path in weights.iterdir() if path.is_symlink())
    assert "best" in links
    assert "last" in links
    named = [name for name in links if name.startswith("epoch")]
    assert len(named) == 2
    targets = {os.readlink(weights / name) for name in links}
    real = {path.name for path in weights.iterdir() if not path.is_symlink()}
    assert real == targets  # dropped top-k directories are gone
    checkpoint = load_checkpoint(weights / "best", tiny_task(strategy="fsdp"))
    assert checkpoint["task"]["model"]["0.weight"].shape == (8, 4)
    shutil.rmtree(weights)


def test_an_asynchronous_sharded_save_returns_before_it_is_written_and_training_waits(
    tmp_path, monkeypatch
):
    from hookline.backends.torch import sharded

    calls: list[tuple[bool, bool]] = []
    real_save = sharded.ShardedSaver.save

    def save(self, directory, *args, asynchronous=False, **kwargs):
        written = real_save(self, directory, *args, asynchronous=asynchronous, **kwargs)
        calls.append((asynchronous, self.in_flight))
        return written

    monkeypatch.setattr(sharded.ShardedSaver, "save", save)
    synchronous = sharded_run(tmp_path / "sync", epochs=2, save_every_n_steps=1, filename="s")
    background = sharded_run(
        tmp_path / "async", epochs=2, save_every_n_steps=1, filename="s", async_checkpoint=True
    )
    assert len(calls) == 2 * 10  # 8 step saves and 2 epoch ends, in each run
    assert not any(flag for flag, _ in calls[:10])
    assert all(flag for flag, _ in calls[10:])  # in the background
    assert not background.task._saver.in_flight  # the end of training waited for the last
    last = load_checkpoint(tmp_path / "async" / "weights" / "last", tiny_task(strategy="fsdp"))
    assert last["progress"]["global_step"] == synchronous.global_step == 8
    for name, value in synchronous.task.model.state_dict().items():
        assert torch.equal(last["task"]["model"][name], value), name
