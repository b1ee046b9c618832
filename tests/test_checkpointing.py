"""Checkpoint selection on scripted metrics, atomic writes, and refusing unsafe or broken files."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest

import hookline
from hookline import CheckpointError, PluginManager, Trainer
from hookline.backends.torch.testing import TorchBackend
from hookline.engine import checkpoint_file
from hookline.plugins.checkpoint import ModelCheckpoint
from hookline.plugins.nan_guard import NanGuard
from hookline.plugins.support import atomic_write
from tests.test_early_stopping import Script


def train(backend, tmp_path: Path, values: list[float], name: str = "val/loss", **options):
    checkpoint = ModelCheckpoint(monitor=name, **options)
    trainer = Trainer(
        backend.make_task(), [checkpoint, Script(name, values)], manager=PluginManager()
    )
    trainer.fit(backend.batches(64, 16), epochs=len(values), save_dir=tmp_path)
    return trainer, checkpoint, tmp_path / "weights"


def saved_epoch(backend, path: Path) -> int:
    return backend.load_checkpoint(path)["progress"]["epoch"] - 1


def test_last_and_best_follow_the_monitored_metric(backend, tmp_path):
    _, checkpoint, weights = train(backend, tmp_path, [3.0, 1.0, 2.0, 1.5])
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt", "last.pt"]
    assert saved_epoch(backend, weights / "best.pt") == 1
    assert saved_epoch(backend, weights / "last.pt") == 3
    assert (checkpoint.best_score, checkpoint.best_epoch) == (1.0, 1)


def test_top_k_keeps_the_k_best_epochs_and_deletes_the_rest(backend, tmp_path):
    _, checkpoint, weights = train(
        backend, tmp_path, [3.0, 1.0, 2.0, 0.5, 4.0], save_top_k=2, filename="epoch{epoch}"
    )
    assert sorted(p.name for p in weights.iterdir()) == [
        "best.pt", "epoch1.pt", "epoch3.pt", "last.pt"
    ]
    assert saved_epoch(backend, weights / "best.pt") == 3
    assert [score for score, _ in checkpoint.top_k] == [0.5, 1.0]


def test_max_mode_and_metric_values_in_the_filename(backend, tmp_path):
    _, _, weights = train(
        backend, tmp_path, [0.5, 0.9, 0.7], "val/accuracy", save_top_k=3,
        filename="e{epoch}-acc{val_accuracy:.2f}",
    )
    assert sorted(p.name for p in weights.iterdir()) == [
        "best.pt", "e0-acc0.50.pt", "e1-acc0.90.pt", "e2-acc0.70.pt", "last.pt"
    ]
    assert saved_epoch(backend, weights / "best.pt") == 1


def test_periodic_saves_every_n_epochs_and_every_n_steps(backend, tmp_path):
    # 64 samples in batches of 16: 4 optimizer steps per epoch
    _, _, weights = train(
        backend, tmp_path, [1.0] * 4, save_top_k=0, save_last=False, save_period=2,
        save_every_n_steps=6, filename="epoch{epoch}-step{step}",
    )
    assert sorted(p.name for p in weights.iterdir()) == [
        "epoch1-step6.pt", "epoch1-step8.pt", "epoch2-step12.pt", "epoch3-step16.pt"
    ]
    mid_epoch = backend.load_checkpoint(weights / "epoch1-step6.pt")["progress"]
    assert (mid_epoch["epoch"], mid_epoch["batches_done"], mid_epoch["global_step"]) == (1, 2, 6)


def test_an_unfillable_filename_template_names_what_it_can_use(backend, tmp_path):
    from hookline import UserError

    with pytest.raises(UserError, match="can use epoch, step, train_loss"):
        train(backend, tmp_path, [1.0], save_top_k=2, filename="{val_acc}")


def test_on_model_save_fires_after_each_file_is_complete(backend, tmp_path):
    saved = []
    trainer = Trainer(backend.make_task(), [ModelCheckpoint()], manager=PluginManager())
    trainer.add_callback(
        "on_model_save",
        lambda path: saved.append((path.name, backend.load_checkpoint(path)["progress"]["epoch"])),
    )
    trainer.fit(
        backend.batches(64, 16), backend.batches(32, 16, seed=1), epochs=2, save_dir=tmp_path
    )
    assert [entry for entry in saved if entry[0] == "last.pt"] == [("last.pt", 1), ("last.pt", 2)]
    header = checkpoint_file.read_header(tmp_path / "weights" / "last.pt")
    assert header["format"] == trainer.task.checkpoint_format


class TurnsNaN:
    """The batches of ``data`` in every epoch, with NaN inputs from the ``after``-th batch of
    the run on (so the loss turns NaN in the middle of a run, on any backend)."""

    def __init__(self, data: list, after: int) -> None:
        self.data, self.after, self.drawn = data, after, 0

    def __iter__(self):
        for inputs, targets in self.data:
            self.drawn += 1
            yield (inputs * math.nan if self.drawn > self.after else inputs), targets


def test_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(backend, tmp_path):
    trainer = Trainer(backend.make_task(), [ModelCheckpoint(), NanGuard()], manager=PluginManager())
    with pytest.warns(UserWarning, match="the loss is not finite; the last good checkpoint"):
        # NaN from the 7th batch: epoch 1 (of 4 batches each)
        trainer.fit(TurnsNaN(backend.batches(64, 16), after=6), epochs=5, save_dir=tmp_path)
    assert trainer.stop_reason.startswith("NaN guard: the loss became NaN or infinite in epoch 2")
    assert trainer.epoch == 1
    last = backend.load_checkpoint(tmp_path / "weights" / "last.pt")
    assert last["progress"]["epoch"] == 1  # written after epoch 0, the last finite one
    restored = backend.make_task()
    restored.load_state_dict(last["task"])
    assert all(np.isfinite(value).all() for value in backend.weights(restored).values())


def test_atomic_write_leaves_the_previous_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "last.pt"
    atomic_write(target, lambda file: file.write(b"good"))

    def dies_halfway(file):
        file.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_halfway)
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["last.pt"]


def test_only_checkpoints_are_flushed_to_disk_during_a_run(backend, tmp_path, monkeypatch):
    """Checkpoints survive a power loss (fsync of the file and its folder); the run's other
    files (args, metrics, summary) are replaced atomically without a flush."""
    flushed: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        flushed.append(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    hookline.Model(backend.make_task(), manager=PluginManager()).train(
        backend.batches(64, 16), epochs=2, project=str(tmp_path), name="run", plots=False,
        verbose=False, progress=False,
    )
    run = tmp_path / "train" / "run"
    assert {"args.yaml", "results.csv", "metrics.jsonl", "summary.json"} <= set(os.listdir(run))
    # one checkpoint per epoch: its temporary file, then the weights folder after the rename
    assert len(flushed) == 4
    assert [name.startswith(".last.pt.") for name in flushed[::2]] == [True, True]
    assert flushed[1::2] == ["weights", "weights"]


class RunsCode:
    """Unpickling this runs a command that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    payload = io.BytesIO()
    torch.save({"task": {"model": RunsCode(marker)}, "progress": {}}, payload)
    path.write_bytes(checkpoint_file.encode(payload.getvalue(), "torch", {}))
    with pytest.raises(CheckpointError, match=r"need arbitrary unpickling .*refused"):
        TorchBackend().load_checkpoint(path)
    assert not marker.exists()


DAMAGE = {
    # (what is done to the file's bytes, the error that names it)
    "truncate": (lambda data: data[: len(data) // 2], "is corrupt: its content does not match"),
    "flip one bit": (
        lambda data: data[:-100] + bytes([data[-100] ^ 0x10]) + data[-99:],
        "is corrupt: its content does not match",
    ),
    "garbage": (lambda data: b"\x80\x04not torch", "is not a hookline checkpoint"),
    "empty": (lambda data: b"", "is not a hookline checkpoint"),
    "header cut": (lambda data: data[:40], "is truncated or corrupt: bad header"),
}


@pytest.mark.parametrize("damage", [*DAMAGE, "payload of no format"])
def test_corrupt_or_truncated_checkpoints_name_the_file(backend, tmp_path, damage):
    Trainer(backend.make_task(), [ModelCheckpoint()], manager=PluginManager()).fit(
        backend.batches(32, 16), epochs=1, save_dir=tmp_path
    )
    path = tmp_path / "weights" / "last.pt"
    if damage == "payload of no format":  # a valid header over a payload its task cannot read
        format = checkpoint_file.read_header(path)["format"]
        change, message = lambda data: checkpoint_file.encode(b"\xc1junk", format, {}), ""
    else:
        change, message = DAMAGE[damage]
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(CheckpointError, match=f"'{path}' {message}"):
        backend.load_checkpoint(path)


def test_a_plain_torch_file_is_not_a_hookline_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="is not a hookline checkpoint"):
        TorchBackend().load_checkpoint(path)


def test_a_checkpoint_of_another_backend_is_refused_by_name(backend, tmp_path):
    from hookline.testing import LinearRegressionTask

    path = tmp_path / "toy.pt"
    path.write_bytes(checkpoint_file.encode(b"{}", LinearRegressionTask.checkpoint_format, {}))
    format = backend.make_task().checkpoint_format
    with pytest.raises(CheckpointError, match=f"written by a json task; this is a {format} task"):
        backend.load_checkpoint(path)
