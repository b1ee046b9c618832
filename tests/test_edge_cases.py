"""The edge cases users of other trainers trip on: empty data, a loss that is NaN from the
start, resuming a finished run, the clock of a resumed run, file permissions, state nobody
receives, and two runs started at once."""

from __future__ import annotations

import csv
import json
import math
import os
import stat
import threading
import time
from pathlib import Path

import pytest

import hookline
from hookline import Callback, Model, PluginManager, Trainer, UserError
from hookline.plugins.support import claim_run_dir
from hookline.testing import LinearRegressionTask
from tests.conftest import regression_batches


def model_run(project: Path, *plugins: object, epochs: int = 3, **settings: object) -> Model:
    model = Model(LinearRegressionTask(3), list(plugins), manager=PluginManager())
    model.train(
        regression_batches(16, 4), regression_batches(8, 4, seed=1), epochs=epochs,
        project=str(project), name="run", exist_ok=True, plots=False, verbose=False,
        progress=False, resources=False, **settings,
    )
    return model


def test_empty_training_data_is_an_error_not_an_untrained_model(task, manager):
    with pytest.raises(UserError, match="the training data yielded no batch in epoch 1"):
        Trainer(task, manager=manager).fit([], epochs=2)


def test_a_loss_that_is_nan_from_the_first_batch_claims_no_checkpoint(tmp_path):
    class NanTask(LinearRegressionTask):
        def training_step(self, batch):
            super().training_step(batch)
            return math.nan

    model = Model(NanTask(3), manager=PluginManager())
    with pytest.warns(UserWarning, match="the loss is not finite"):
        model.train(regression_batches(16, 4), epochs=2, project=str(tmp_path), plots=False,
                    verbose=False, progress=False, resources=False)
    reason = model.trainer.stop_reason
    assert reason.startswith("NaN guard: the loss became NaN or infinite in epoch 1")
    assert "checkpoints are written only while it is finite" in reason
    assert "last finite checkpoint is kept" not in reason
    assert not (tmp_path / "train" / "exp" / "weights" / "last.pt").exists()


def test_resuming_a_finished_run_reports_its_epochs_not_one_more(tmp_path):
    model_run(tmp_path, epochs=3)
    last = tmp_path / "train" / "run" / "weights" / "last.pt"
    model_run(tmp_path, epochs=3, resume=str(last))
    summary = json.loads((tmp_path / "train" / "run" / "summary.json").read_text())
    assert (summary["epochs"], summary["of_epochs"]) == (3, 3)


class SlowSave(Callback):
    """Makes each checkpoint's write take half a second after its state was collected, as a
    busy disk does."""

    def on_model_save(self) -> None:
        time.sleep(0.5)


def test_the_time_column_carries_on_after_a_resume(tmp_path):
    model_run(tmp_path, SlowSave(), epochs=2)
    run = tmp_path / "train" / "run"
    model_run(tmp_path, epochs=4, resume=str(run / "weights" / "last.pt"))
    with open(run / "results.csv", newline="") as file:
        times = [float(row["time"]) for row in csv.DictReader(file)]
    assert len(times) == 4
    assert times == sorted(times)  # no restart at the resumed epoch
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)


def test_run_files_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        from hookline.plugins.support import files

        files.file_mode.cache_clear()
        model_run(tmp_path, epochs=1)
    finally:
        os.umask(previous)
        files.file_mode.cache_clear()
    run = tmp_path / "train" / "run"
    for name in ("args.yaml", "results.csv", "summary.json", "weights/last.pt"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o640, name


def test_state_that_no_plugin_receives_is_named(tmp_path):
    class Counter(Callback):
        def __init__(self) -> None:
            self.count = 0

        def state_dict(self):
            return {"count": self.count}

        def load_state_dict(self, state):
            self.count = state["count"]

    model_run(tmp_path, Counter(), epochs=1)
    last = tmp_path / "train" / "run" / "weights" / "last.pt"
    with pytest.warns(UserWarning, match="not here to receive it: Counter"):
        model_run(tmp_path, epochs=2, resume=str(last))


def test_parallel_runs_never_share_a_run_directory(tmp_path):
    claimed: list[Path] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        claimed.append(claim_run_dir(tmp_path / "train", "exp"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(claimed)) == 8
    assert {path.name for path in claimed} == {"exp", *(f"exp{n}" for n in range(2, 9))}


def test_a_misspelt_monitor_names_the_metrics_that_exist(tmp_path):
    # the first plugin to read it says so (early stopping, then checkpointing), at epoch 1
    with pytest.raises(hookline.SettingsError, match="setting 'monitor' names 'val/los', which "
                                                     "is not reported; the metrics are: "
                                                     "train/loss, lr, val/loss, val/mae"):
        model_run(tmp_path, monitor="val/los")


def test_a_plugin_named_like_a_builtin_is_refused_and_the_builtin_still_runs(tmp_path):
    from hookline import PluginLoadError, PluginLoadWarning
    from hookline.flags import apply_flags

    class Impostor(Callback):
        pass

    manager = PluginManager()
    manager.register(Impostor(), "checkpoint")  # as an entry point named checkpoint would be
    with pytest.warns(PluginLoadWarning, match="plugin 'checkpoint' .* has the name of "
                                               "hookline's built-in 'checkpoint' plugin"):
        apply_flags(manager, {"checkpoint": True})
    assert type(manager.get_plugin("checkpoint")).__name__ == "ModelCheckpoint"
    strict = PluginManager()
    strict.strict = True
    strict.register(Impostor(), "checkpoint")
    with pytest.raises(PluginLoadError, match="has the name of hookline's built-in"):
        apply_flags(strict, {"checkpoint": True})


def test_a_checkpoint_without_optimizer_state_says_so_on_resume(tmp_path):
    pytest.importorskip("torch")
    from tests.test_torch_backend import make_task

    task = make_task()
    task.setup("fit")
    with pytest.warns(UserWarning, match="holds no optimizer state: the optimizer starts afresh"):
        task.load_state_dict({"model": task.model.state_dict()})
