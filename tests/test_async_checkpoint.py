"""Asynchronous checkpoints (``async_checkpoint``) and the one-pass file write under both modes.

The loop waits only for ``StateTask.host_copy``; the file is serialised, hashed, fsynced and
renamed in a background thread, one at a time; the end of training, a signal and ``teardown``
wait for it; a failed write is raised at the plugin's next hook and the previous checkpoint
stays.  (kill -9 at any moment: tests/test_resume.py, both modes.)
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from hookline import Callback, CheckpointError, PluginManager, Trainer
from hookline.engine import checkpoint_file
from hookline.manager import PluginDisabledWarning
from hookline.plugins.checkpoint import ModelCheckpoint
from hookline.plugins.support import checkpoint_writer
from hookline.plugins.support.checkpoint_writer import write_checkpoint_files
from hookline.settings import Options
from hookline.testing import LinearRegressionTask
from tests.conftest import regression_batches

MODES = {"sync": False, "async": True}


def writer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "hookline-checkpoint"]


def load(path: Path, task=None) -> dict:
    return checkpoint_file.load_checkpoint(path, task or LinearRegressionTask(3))


class SavedFiles(Callback):
    """Records ``on_model_save``: the step it fired at, and the file's progress then."""

    def __init__(self) -> None:
        self.saved: list[tuple[int, str]] = []

    def on_model_save(self, trainer, path) -> None:
        assert path.is_file(), "on_model_save fired before the file was complete"
        self.saved.append((trainer.global_step, path.name))


class GatedTask(LinearRegressionTask):
    """The toy task, whose checkpoint writes can be held back (write number ``hold`` waits
    for ``gate``), slowed down, counted or made to fail (they run in the writer's thread under
    ``async_checkpoint``)."""

    def __init__(self) -> None:
        super().__init__(3, lr=0.05)
        self.gate = threading.Event()
        self.hold: int | None = None
        self.delay = 0.0
        self.fail_after: int | None = None
        self.writes = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def write_checkpoint(self, checkpoint, file) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.writes += 1
            writes = self.writes
        try:
            self.threads.add(threading.current_thread().name)
            if writes == self.hold:
                assert self.gate.wait(timeout=30)
            time.sleep(self.delay)
            if self.fail_after is not None and writes > self.fail_after:
                file.write(b"{")  # a partial file, then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            super().write_checkpoint(checkpoint, file)
        finally:
            with self._lock:
                self.in_flight -= 1


def fit(task, tmp_path: Path, *plugins, epochs: int = 3, **checkpoint) -> Trainer:
    trainer = Trainer(task, [ModelCheckpoint(**checkpoint), *plugins], manager=PluginManager())
    trainer.fit(regression_batches(32, 8), regression_batches(16, 8, seed=1), epochs=epochs,
                save_dir=tmp_path)
    return trainer


# -- the same checkpoints, written in the background ----------------------------------------------


def test_an_asynchronous_run_saves_the_same_checkpoints_as_a_synchronous_one(tmp_path):
    runs = {}
    for mode, asynchronous in MODES.items():
        saved = SavedFiles()
        trainer = fit(LinearRegressionTask(3), tmp_path / mode, saved, save_every_n_steps=3,
                      save_top_k=2, async_checkpoint=asynchronous)
        files = sorted(path.name for path in (tmp_path / mode / "weights").iterdir())
        runs[mode] = (trainer, saved.saved, files)
    (sync, sync_saved, sync_files), (same, async_saved, async_files) = runs["sync"], runs["async"]
    assert async_files == sync_files
    assert not [name for name in async_files if name.endswith(".tmp")]
    for name in sync_files:
        expected = load(tmp_path / "sync" / "weights" / name)
        written = load(tmp_path / "async" / "weights" / name)
        assert written["args"].pop("async_checkpoint") is True
        assert expected["args"].pop("async_checkpoint") is False
        assert json.dumps(written).replace(str(tmp_path / "async"), "RUN") == (
            json.dumps(expected).replace(str(tmp_path / "sync"), "RUN")), name
    # every file reported once it was complete; in the background, later than it was taken
    assert sorted(name for _, name in async_saved) == sorted(name for _, name in sync_saved)
    assert [step for step, _ in async_saved] >= [step for step, _ in sync_saved]
    assert same.task.weight == sync.task.weight
    assert not writer_threads(), "the writer's thread outlived the run"


def test_the_loop_goes_on_while_the_checkpoint_is_written(tmp_path):
    task = GatedTask()
    task.hold = 1  # epoch 0's checkpoint is held back until epoch 1's third batch
    seen: dict[str, object] = {}

    class Release(Callback):
        def on_train_batch_end(self, trainer, batch_idx) -> None:
            if (trainer.epoch, batch_idx) == (1, 2):
                seen["last.pt"] = (tmp_path / "weights" / "last.pt").exists()
                seen["saved"] = list(saved.saved)
                task.gate.set()

    saved = SavedFiles()
    fit(task, tmp_path, saved, Release(), epochs=2, async_checkpoint=True)
    assert seen == {"last.pt": False, "saved": []}  # training went on meanwhile
    assert task.threads == {"hookline-checkpoint"}
    assert load(tmp_path / "weights" / "last.pt")["progress"]["epoch"] == 2
    assert (1, "last.pt") not in saved.saved  # reported at the first hook after the write
    assert [name for _, name in saved.saved].count("last.pt") == 2


def test_at_most_one_write_is_in_flight_and_a_new_save_waits_for_it(tmp_path):
    task = GatedTask()
    task.delay = 0.02  # longer than a step: every save finds the previous one writing
    saved = SavedFiles()
    trainer = fit(task, tmp_path, saved, save_every_n_steps=1, filename="step{step}",
                  async_checkpoint=True)
    assert task.most_in_flight == 1
    # 4 steps an epoch, 3 epochs: 12 step saves and 3 epoch-end saves
    assert task.writes == 15
    steps = sorted(int(name[4:-3]) for _, name in saved.saved if name.startswith("step"))
    assert steps == list(range(1, trainer.global_step + 1))
    for step in steps:  # each file holds its own step, nothing later
        assert load(tmp_path / "weights" / f"step{step}.pt")["progress"]["global_step"] == step


def test_a_failed_background_write_is_raised_at_the_next_hook_and_the_previous_one_stays(
    tmp_path,
):
    task = GatedTask()
    task.fail_after = 5  # steps 1-4 and epoch 0's end are written; step 5's write fails
    trainer = Trainer(task, [ModelCheckpoint(save_every_n_steps=1, filename="step",
                                             async_checkpoint=True)], manager=PluginManager())
    with pytest.raises(CheckpointError) as failed:
        trainer.fit(regression_batches(32, 8), epochs=3, save_dir=tmp_path)
    message = str(failed.value)
    assert "\n" not in message
    assert message.endswith("No space left on device; the previous one is kept")
    assert "weights/step.pt" in message
    assert trainer.global_step == 6  # raised at the plugin's next hook: step 6's end
    assert load(tmp_path / "weights" / "last.pt")["progress"]["global_step"] == 4
    assert not list((tmp_path / "weights").glob(".*.tmp"))


def test_the_plugins_error_policy_applies_to_a_failed_background_write(tmp_path):
    task = GatedTask()
    task.fail_after = 2
    trainer = Trainer(task, [ModelCheckpoint(save_every_n_steps=1, async_checkpoint=True)],
                      manager=PluginManager())
    with pytest.warns(PluginDisabledWarning, match="No space left on device"):
        trainer.fit(regression_batches(32, 8), epochs=3, save_dir=tmp_path,
                    plugin_errors="disable")
    assert trainer.global_step == 12  # training carried on without checkpoints
    assert load(tmp_path / "weights" / "last.pt")["progress"]["global_step"] == 2


class Crash(Exception):
    pass


def test_teardown_completes_the_write_in_flight_after_a_crash(tmp_path):
    task = GatedTask()
    task.hold = 3  # step 3's save is in the writer, held back, when the crash comes

    class CrashAfterSave(Callback):
        def on_train_batch_start(self, trainer) -> None:
            if trainer.global_step == 3:
                threading.Timer(0.3, task.gate.set).start()
                raise Crash

    with pytest.raises(Crash):
        fit(task, tmp_path, CrashAfterSave(), save_every_n_steps=1, async_checkpoint=True)
    assert load(tmp_path / "weights" / "last.pt")["progress"]["global_step"] == 3
    assert not writer_threads()


def test_a_signal_waits_for_the_write_and_its_checkpoint_resumes_exactly(backend, tmp_path):
    from tests.test_signals import Heard, SignalAt, train

    expected = backend.weights(train(backend, tmp_path / "full").task)
    model = train(backend, tmp_path / "part", SignalAt(1, 4), Heard(), async_checkpoint=True,
                  save_every_n_steps=1)
    assert model.trainer.interrupted
    weights = tmp_path / "part" / "train" / "run" / "weights"
    progress = backend.load_checkpoint(weights / "last.pt")["progress"]
    assert (progress["epoch"], progress["batches_done"]) == (1, 6)
    assert not list(weights.glob(".*.tmp"))
    resumed = train(backend, tmp_path / "part", resume="auto", async_checkpoint=True,
                    save_every_n_steps=1)
    weights = backend.weights(resumed.task)
    for name, value in expected.items():
        assert np.array_equal(weights[name], value), name


def test_resuming_mid_epoch_from_an_asynchronous_checkpoint_matches_an_uninterrupted_run(
    backend, tmp_path
):
    """tests/test_resume.py's in-process scenario with asynchronous checkpoints: the crash
    lands while step 7's file may still be written; teardown completes it."""
    from hookline.backends.tiny import blobs

    def data():
        return backend.shuffled(*blobs(64, seed=5), size=16, seed=3)

    def trainer(**options: object) -> Trainer:
        plugins = [ModelCheckpoint(save_every_n_steps=1, filename="step", async_checkpoint=True,
                                   **options)]
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
    last = tmp_path / "part" / "weights" / "last.pt"
    assert backend.load_checkpoint(last)["progress"]["global_step"] in (6, 7)
    resumed = trainer(resume=str(last))
    resumed.fit(data(), epochs=3, save_dir=tmp_path / "part")
    assert resumed.global_step == full.global_step == 12
    expected, weights = backend.weights(full.task), backend.weights(resumed.task)
    for name, value in expected.items():
        assert np.array_equal(weights[name], value), name


def test_async_checkpoint_is_a_setting(tmp_path):
    options = Options()
    ModelCheckpoint().hookline_add_options(options)
    assert options.get("async_checkpoint").default is False
    trainer = Trainer(LinearRegressionTask(3), [ModelCheckpoint()], manager=PluginManager())
    trainer.fit(regression_batches(16, 8), epochs=1, save_dir=tmp_path, async_checkpoint=True)
    assert trainer.args["async_checkpoint"] is True
    assert load(tmp_path / "weights" / "last.pt")["args"]["async_checkpoint"] is True


# -- host copies -----------------------------------------------------------------------------------


def test_the_toy_tasks_host_copy_shares_nothing():
    task = LinearRegressionTask(3)
    checkpoint = {"task": task.state_dict(), "plugins": {"mine": {"seen": [1, 2]}}}
    copied = task.host_copy(checkpoint)
    checkpoint["plugins"]["mine"]["seen"].append(3)
    checkpoint["task"]["weight"][0] = 99.0
    assert copied["plugins"]["mine"]["seen"] == [1, 2]
    assert copied["task"]["weight"][0] != 99.0


def test_the_torch_host_copy_is_a_cpu_copy_that_keeps_shared_storages_shared():
    torch = pytest.importorskip("torch")
    from hookline.backends.torch import TorchTask
    from hookline.backends.torch.host import TorchHostState

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4),
                                torch.nn.Linear(4, 4))
    model[2].weight = model[0].weight  # tied
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    task = TorchTask(model, torch.nn.functional.mse_loss, optimizer, device="cpu")
    numbers = torch.arange(10.0)
    checkpoint = {
        "task": task.state_dict(), "view": numbers[2:5], "whole": numbers,
        "plugins": {"mine": {"seen": [1]}}, "pair": (1, numbers[::2]),
    }
    for state in (task, TorchHostState(model, optimizer)):
        copied = state.host_copy(checkpoint)
        live, copy = checkpoint["task"]["model"], copied["task"]["model"]
        assert isinstance(copy, OrderedDict)
        assert copy._metadata == live._metadata
        for name, value in live.items():
            assert torch.equal(copy[name], value)
            assert copy[name].device.type == "cpu"
            assert copy[name].untyped_storage().data_ptr() != value.untyped_storage().data_ptr()
        assert copy["0.weight"].untyped_storage().data_ptr() == (
            copy["2.weight"].untyped_storage().data_ptr())  # one storage, as torch.save keeps
        assert copied["view"].untyped_storage().data_ptr() == (
            copied["whole"].untyped_storage().data_ptr())
        assert torch.equal(copied["task"]["optimizer"]["state"][0]["exp_avg"],
                           checkpoint["task"]["optimizer"]["state"][0]["exp_avg"])
        numbers += 1  # training goes on: the copy does not move
        checkpoint["plugins"]["mine"]["seen"].append(2)
        assert copied["whole"].tolist() == (numbers - 1).tolist()
        assert copied["pair"][1].tolist() == (numbers - 1)[::2].tolist()
        assert copied["plugins"]["mine"]["seen"] == [1]
        numbers -= 1
        checkpoint["plugins"]["mine"]["seen"].pop()
        loaded = task.load_checkpoint(task.save_checkpoint(copied), "copy")
        assert torch.equal(loaded["task"]["model"]["0.weight"], live["0.weight"])


def test_the_jax_host_copy_is_numpy_on_the_host():
    jax = pytest.importorskip("jax")
    from hookline.testing.backends import backend

    task = backend("jax").make_task(features=4, hidden=8, optimizer="adamw", lr=0.01)
    task.setup("fit")
    state = task.state_dict()
    plain = np.arange(3)
    copied = task.host_copy({"task": state, "plugins": {"mine": plain}})
    leaves = jax.tree_util.tree_leaves(copied["task"])
    assert leaves
    assert all(isinstance(leaf, np.ndarray) for leaf in leaves)
    for ours, theirs in zip(leaves, jax.tree_util.tree_leaves(state), strict=True):
        assert np.array_equal(ours, np.asarray(theirs))
    plain += 1
    assert copied["plugins"]["mine"].tolist() == [0, 1, 2]


def test_the_keras_host_copy_is_numpy(tmp_path):
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from hookline.bridges.keras import KerasState

    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    net.compile(optimizer="adam", loss="mse")
    state = KerasState(net)
    plain = np.zeros(2)
    copied = state.host_copy({"task": state.state_dict(), "value": net.trainable_variables[0],
                              "plugins": {"mine": plain}})
    assert all(isinstance(array, np.ndarray) for array in copied["task"]["model"])
    assert isinstance(copied["value"], np.ndarray)
    plain += 1
    assert copied["plugins"]["mine"].tolist() == [0.0, 0.0]
    loaded = state.load_checkpoint(state.save_checkpoint(copied), "copy")
    assert np.array_equal(loaded["value"], copied["value"])


# -- the one-pass write ----------------------------------------------------------------------------


@pytest.mark.parametrize("helper", [True, False], ids=["hashing-thread", "one-thread"])
def test_a_streamed_file_is_byte_for_byte_the_encoded_checkpoint(tmp_path, monkeypatch, helper):
    if not helper:
        monkeypatch.setattr(checkpoint_writer, "OVERLAP_MIN_CPUS", 10**6)
    elif checkpoint_writer.usable_cpus() < checkpoint_writer.OVERLAP_MIN_CPUS:
        pytest.skip("one CPU: the helper thread is never used")
    payload = os.urandom(3 << 20)  # a large chunk goes to the helper thread
    args = {"lr": 0.1, "name": "run"}
    write_checkpoint_files([tmp_path / "a.pt"], "json", args, lambda file: (
        file.write(payload[:100]), file.write(memoryview(payload)[100:])))
    data = (tmp_path / "a.pt").read_bytes()
    assert data == checkpoint_file.encode(payload, "json", args)
    header = checkpoint_file.read_header(tmp_path / "a.pt")
    assert header["sha256"] == hashlib.sha256(payload).hexdigest()


def test_every_other_name_is_a_hard_link_or_a_durable_copy(tmp_path, monkeypatch):
    def payload(file) -> None:
        file.write(b'{"task": {}}')

    write_checkpoint_files([tmp_path / "last.pt", tmp_path / "best.pt"], "json", {}, payload)
    assert os.path.samefile(tmp_path / "last.pt", tmp_path / "best.pt")
    write_checkpoint_files([tmp_path / "last.pt"], "json", {"again": 1}, payload)
    assert not os.path.samefile(tmp_path / "last.pt", tmp_path / "best.pt")  # best.pt kept
    assert load(tmp_path / "best.pt")["args"] == {}

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(checkpoint_writer.os, "link", no_links)
    write_checkpoint_files([tmp_path / "x.pt", tmp_path / "y.pt"], "json", {}, payload)
    assert not os.path.samefile(tmp_path / "x.pt", tmp_path / "y.pt")
    assert (tmp_path / "x.pt").read_bytes() == (tmp_path / "y.pt").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "best.pt", "last.pt", "x.pt", "y.pt"]


def test_a_failed_streamed_write_leaves_the_target_as_it_was(tmp_path):
    write_checkpoint_files([tmp_path / "last.pt"], "json", {}, lambda file: file.write(b"{}"))
    before = (tmp_path / "last.pt").read_bytes()

    def full(file) -> None:
        file.write(b"{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(CheckpointError, match=r"last.pt': No space left on device; the previous"):
        write_checkpoint_files([tmp_path / "last.pt", tmp_path / "best.pt"], "json", {}, full)
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.pt"]


def test_the_streamed_torch_payload_is_a_valid_zip_that_loads_back(tmp_path):
    torch = pytest.importorskip("torch")
    import io
    import zipfile

    from hookline.backends.torch import state as torch_state

    values = {"task": {"w": torch.randn(1000)}}
    write_checkpoint_files([tmp_path / "a.pt"], "torch", {}, lambda file: (
        torch_state.write_payload(values, file)))
    payload = (tmp_path / "a.pt").read_bytes()[len(checkpoint_file.header("torch", {})):]
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert archive.testzip() is None  # every record's CRC-32 checks out
    loaded = torch_state.load_payload(payload, "a.pt")
    assert torch.equal(loaded["task"]["w"], values["task"]["w"])


# -- DDP: rank zero writes in the background -------------------------------------------------------


@pytest.mark.slow
def test_two_ddp_ranks_with_asynchronous_checkpoints_resume_a_killed_run_bit_for_bit(tmp_path):
    """Rank zero writes in the background; kill -9 of the whole job mid-training; the resumed
    run ends with the uninterrupted run's weights exactly."""
    torch = pytest.importorskip("torch")
    from tests.test_distributed import JOB, TORCHRUN, kill_tree, torchrun
    from tests.test_torch_backend import load_torch_checkpoint

    words = [str(JOB), "runs", "record", "--epochs", "2", "--save-every-n-steps", "5",
             "--async-checkpoint"]
    process = subprocess.Popen([*TORCHRUN, *words], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("saved ") and int(line.split()[1]) >= 15:
            kill_tree(process.pid)
            break
    process.wait(timeout=60)
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    killed_at = load_torch_checkpoint(last)
    assert 10 <= killed_at["progress"]["global_step"] < 2 * 23
    assert killed_at["args"]["async_checkpoint"] is True
    torchrun(*words, "--resume", str(last), cwd=tmp_path)
    finals = [json.loads((tmp_path / "record" / f"final{r}.json").read_text()) for r in (0, 1)]
    assert finals[0] == finals[1]
    assert (finals[0]["epoch"], finals[0]["global_step"]) == (1, 2 * 23)
    assert load_torch_checkpoint(last)["progress"]["epoch"] == 2
    assert not list(last.parent.glob(".*.tmp"))
    (tmp_path / "whole").mkdir()
    torchrun(*words, cwd=tmp_path / "whole")
    whole = tmp_path / "whole" / "runs" / "train" / "exp" / "weights" / "last.pt"
    expected = load_torch_checkpoint(whole)["task"]["model"]
    resumed = load_torch_checkpoint(last)["task"]["model"]
    assert expected.keys() == resumed.keys()
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), name  # bit for bit
