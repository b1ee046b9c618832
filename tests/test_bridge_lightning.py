"""hookline's plugins inside a real Lightning ``Trainer`` (hookline.bridges.lightning): tiny
LightningModules on random data, nothing downloaded."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import hookline  # noqa: E402
from hookline.backends.torch.host import TorchHostState  # noqa: E402
from hookline.bridges.lightning import HooklineCallback, metric_name  # noqa: E402
from hookline.bridges.loop import UnsupportedHookWarning  # noqa: E402
from hookline.plugins.lr_scheduler import LRScheduler  # noqa: E402
from hookline.testing import HookRecorder  # noqa: E402

JOBS = Path(__file__).parent / "bridge_jobs"


class RecordingSGD(torch.optim.SGD):
    """SGD that records the learning rate each step actually uses (read after the closure,
    where ``torch.optim.SGD`` reads it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.used: list[float] = []

    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.used.append(self.param_groups[0]["lr"])
        super().step()
        return loss


class Regression(pl.LightningModule):
    """A linear regression; logs ``train_loss`` per step and epoch, ``val_loss``, and ``late``
    (the epoch) from its own ``on_train_epoch_end``."""

    def __init__(self, lr: float = 0.05, momentum: float = 0.0, host_scheduler: str = "",
                 fail_at: tuple[int, int] | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.lr, self.momentum = lr, momentum
        self.host_scheduler = host_scheduler
        self.fail_at = fail_at

    def forward(self, x: Any) -> Any:
        return self.layer(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.fail_at == (self.current_epoch, batch_idx):
            raise ValueError("the forward pass broke")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def on_train_epoch_end(self) -> None:
        self.log("late", float(self.current_epoch))

    def configure_optimizers(self) -> Any:
        optimizer = RecordingSGD(self.parameters(), lr=self.lr, momentum=self.momentum)
        if self.host_scheduler == "step":  # halves the rate every optimizer step
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if self.host_scheduler == "epoch":
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        return optimizer


def loaders(batch_size: int = 16) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.3
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=batch_size), DataLoader(data, batch_size=32)


def make_trainer(root: Path, callbacks: list[Any], epochs: int = 3, logger: bool = True,
                 **kwargs: Any) -> Any:
    kwargs.setdefault("enable_checkpointing", False)
    return pl.Trainer(
        max_epochs=epochs, enable_progress_bar=False, enable_model_summary=False,
        logger=CSVLogger(root) if logger else False, callbacks=callbacks,
        default_root_dir=root, log_every_n_steps=1, **kwargs,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def host_epochs(log_dir: Path) -> list[dict[str, float]]:
    """Lightning's own CSVLogger rows merged per epoch (its val and train rows are apart)."""
    epochs: dict[int, dict[str, float]] = {}
    for row in read_csv(log_dir / "metrics.csv"):
        values = epochs.setdefault(int(row["epoch"]), {})
        values.update({key: float(value) for key, value in row.items() if value != ""})
    return [epochs[epoch] for epoch in sorted(epochs)]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*treespec.*")


# -- names and settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "ours"), [
    ("val_loss", "val/loss"), ("val/acc", "val/acc"), ("val_acc_epoch", "val/acc"),
    ("train_loss_epoch", "train/loss"), ("train/loss", "train/loss"), ("acc", "train/acc"),
    ("train_loss_step", None), ("lr", "lr"), ("time/epoch", "time/epoch"),
])
def test_metric_names(host: str, ours: str | None) -> None:
    assert metric_name(host) == ours


def test_settings_are_checked_at_once() -> None:
    with pytest.raises(hookline.SettingsError, match="patience"):
        HooklineCallback(early_stopping=True, patiense=3)
    with pytest.raises(hookline.SettingsError, match="ckpt_path"):
        HooklineCallback(checkpoint=True, resume="last.pt")


# -- a whole run --------------------------------------------------------------------------------


def test_observers_record_the_hosts_numbers_in_hooklines_order(
    tmp_path: Path, epoch_timer_installed: str
) -> None:
    """Default observers and the installed example plugin run; results.csv holds Lightning's
    own numbers (its CSVLogger's), the LightningModule's epoch-end logs included; the hooks
    come in hookline's order, none from the sanity check; no hook goes unsupported."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback = HooklineCallback()
        recorder = HookRecorder(callback.loop.manager, listen_all=True)
        trainer = make_trainer(tmp_path, [callback], epochs=2, num_sanity_val_steps=1)
        train, val = loaders()
        trainer.fit(Regression(), train, val)
    recorder.close()
    assert not [  # the recorder's listener implements every hook: it alone is warned
        w for w in caught if issubclass(w.category, UnsupportedHookWarning)
        and HookRecorder.LISTENER_NAME not in str(w.message)
    ]

    run_dir = Path(trainer.log_dir)
    assert callback.loop.run is not None
    assert callback.loop.run.save_dir == run_dir
    for name in ("results.csv", "metrics.jsonl", "summary.json", "args.yaml"):
        assert (run_dir / name).is_file(), name
    rows, host = read_csv(run_dir / "results.csv"), host_epochs(run_dir)
    assert len(rows) == len(host) == 2
    for epoch, (row, theirs) in enumerate(zip(rows, host, strict=True)):
        assert int(row["epoch"]) == epoch + 1
        assert float(row["val/loss"]) == pytest.approx(theirs["val_loss"], rel=1e-6)
        assert float(row["train/loss"]) == pytest.approx(theirs["train_loss_epoch"], rel=1e-6)
        assert float(row["train/late"]) == epoch  # logged after ordinary callbacks' epoch end
        assert float(row["time/epoch"]) > 0  # the installed example plugin
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 2
    assert summary["steps"] == trainer.global_step == 8

    names = [name for name in recorder.names if name not in ("on_log",)]
    assert names.index("on_train_start") < names.index("on_val_start")  # no sanity check
    first_epoch = names[names.index("on_train_epoch_start"):names.index("on_fit_epoch_end") + 1]
    batch = ["on_train_batch_start", "on_before_backward", "on_after_backward",
             "on_before_optimizer_step", "on_params_update", "on_before_zero_grad",
             "on_train_batch_end"]
    assert first_epoch == [
        "on_train_epoch_start", *batch * 4, "on_val_start",
        "on_val_batch_start", "on_val_batch_end", "on_val_batch_start", "on_val_batch_end",
        "on_val_end", "on_train_epoch_end", "on_fit_epoch_end",
    ]
    assert names[-2:] == ["on_train_end", "teardown"]
    assert recorder.names.count("on_val_start") == 2
    train_logs = [call for call in recorder.calls
                  if call.name == "on_log" and call.kwargs["phase"] == "train"]
    assert len(train_logs) == 8
    assert all("train/loss" in c.kwargs["metrics"] for c in train_logs)


def test_a_plugin_with_a_hook_lightning_cannot_fire_is_warned_once() -> None:
    class Predicts(hookline.Callback):
        def on_predict_start(self) -> None: ...

    with pytest.warns(UnsupportedHookWarning, match="on_predict_start.*Lightning Trainer"):
        HooklineCallback(plugins=[Predicts()])


def predicted_stop(values: list[float], patience: int, min_delta: float) -> int | None:
    """The epoch (0-based) at which early stopping on ``values`` (min mode) stops."""
    best, wait = math.inf, 0
    for epoch, value in enumerate(values):
        if value < best - min_delta:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch
    return None


def test_early_stopping_ends_lightning_after_the_predicted_epoch(tmp_path: Path) -> None:
    callback = HooklineCallback(early_stopping=True, patience=2, min_delta=0.05)
    trainer = make_trainer(tmp_path, [callback], epochs=12)
    train, val = loaders()
    trainer.fit(Regression(), train, val)

    reported = [epoch["val_loss"] for epoch in host_epochs(Path(trainer.log_dir))]
    # what an uninterrupted run would report: the reported values are its prefix
    stop = predicted_stop(reported, patience=2, min_delta=0.05)
    assert stop is not None
    assert stop == len(reported) - 1 < 11
    assert trainer.current_epoch == stop + 1  # Lightning ran no epoch after the stop
    run = callback.loop.run
    assert run is not None
    assert run.stop_reason is not None
    assert "val/loss" in run.stop_reason
    assert len(read_csv(Path(trainer.log_dir) / "results.csv")) == stop + 1


# -- learning rates -------------------------------------------------------------------------------


def test_a_per_step_schedule_is_what_the_optimizer_uses_despite_lightnings_scheduler(
    tmp_path: Path,
) -> None:
    schedule = LRScheduler(interval="step", schedule="cosine")
    callback = HooklineCallback(plugins=[schedule])
    trainer = make_trainer(tmp_path, [callback], epochs=3, accumulate_grad_batches=2)
    module = Regression(lr=0.1, host_scheduler="step")
    train, val = loaders()
    trainer.fit(module, train, val)

    used = trainer.optimizers[0].used
    horizon = 3 * 2  # epochs x optimizer steps per epoch (4 batches, 2 accumulated)
    assert len(used) == horizon
    expected = [0.1 * (1 + math.cos(math.pi * t / horizon)) / 2 for t in range(horizon)]
    assert used == pytest.approx(expected, rel=1e-9)
    assert used[1] != pytest.approx(0.05)  # Lightning's StepLR alone would have halved it


def test_an_epoch_schedule_by_setting_survives_lightnings_epoch_scheduler(
    tmp_path: Path,
) -> None:
    callback = HooklineCallback(lr_scheduler=True, schedule="step", lr_step_size=1,
                                lr_gamma=0.5)
    trainer = make_trainer(tmp_path, [callback], epochs=3)
    trainer.fit(Regression(lr=0.1, host_scheduler="epoch"), *loaders())

    used = trainer.optimizers[0].used
    assert used == pytest.approx([0.1 * 0.5**epoch for epoch in range(3) for _ in range(4)])
    rows = read_csv(Path(trainer.log_dir) / "results.csv")
    assert [float(row["lr"]) for row in rows] == pytest.approx([0.1, 0.05, 0.025])


# -- checkpoints and failures ---------------------------------------------------------------------


def test_checkpoints_hold_the_lightning_module_and_optimizer(tmp_path: Path) -> None:
    callback = HooklineCallback(checkpoint=True, save_dir=tmp_path / "run")
    trainer = make_trainer(tmp_path, [callback], epochs=2, logger=False)
    module = Regression(momentum=0.9)
    trainer.fit(module, *loaders())

    weights = tmp_path / "run" / "weights"
    assert (weights / "best.pt").is_file()
    fresh = Regression(lr=0.5, momentum=0.9)
    optimizer = torch.optim.SGD(fresh.parameters(), lr=0.5, momentum=0.9)
    task = TorchHostState(fresh, optimizer)
    checkpoint = hookline.load_checkpoint(weights / "last.pt", task)
    task.load_state_dict(checkpoint["task"])
    for name, value in module.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    host_state = trainer.optimizers[0].state_dict()["state"]
    restored = optimizer.state_dict()["state"]
    assert host_state.keys() == restored.keys()
    assert host_state
    for key in host_state:
        assert torch.equal(host_state[key]["momentum_buffer"], restored[key]["momentum_buffer"])
    assert checkpoint["progress"]["epoch"] == 2
    assert checkpoint["progress"]["global_step"] == trainer.global_step


def test_a_failing_observer_is_disabled_and_lightning_trains_on(tmp_path: Path) -> None:
    class Broken(hookline.Callback):
        error_policy = "disable"
        calls = 0

        def on_fit_epoch_end(self) -> None:
            Broken.calls += 1
            raise RuntimeError("observer broke")

    callback = HooklineCallback(plugins=[Broken()])
    trainer = make_trainer(tmp_path, [callback], epochs=3)
    with pytest.warns(UserWarning, match="observer broke"):
        trainer.fit(Regression(), *loaders())
    assert trainer.current_epoch == 3
    assert Broken.calls == 1
    assert len(read_csv(Path(trainer.log_dir) / "results.csv")) == 3
    summary = json.loads((Path(trainer.log_dir) / "summary.json").read_text())
    assert [failure["hook"] for failure in summary["plugin_failures"]] == ["on_fit_epoch_end"]


def test_a_host_side_exception_reaches_every_plugin(tmp_path: Path) -> None:
    class Watcher(hookline.Callback):
        def __init__(self) -> None:
            self.events: list[Any] = []

        def on_exception(self, exception: BaseException) -> None:
            self.events.append(exception)

        def teardown(self) -> None:
            self.events.append("teardown")

    watcher = Watcher()
    callback = HooklineCallback(plugins=[watcher])
    trainer = make_trainer(tmp_path, [callback], epochs=3)
    with pytest.raises(ValueError, match="forward pass broke"):
        trainer.fit(Regression(fail_at=(1, 2)), *loaders())
    assert len(watcher.events) == 2
    assert isinstance(watcher.events[0], ValueError)
    assert watcher.events[1] == "teardown"
    run_dir = Path(trainer.log_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ended"] == "failed: ValueError: the forward pass broke"
    assert len(read_csv(run_dir / "results.csv")) == 1  # the epoch that completed, flushed


# -- resume through Lightning's own checkpoint --------------------------------------------------


class Spy(hookline.Callback):
    """Records the early-stopping state each run starts with."""

    def __init__(self) -> None:
        self.started_with: dict[str, Any] | None = None

    def on_train_start(self, trainer: hookline.TrainingRun) -> None:
        self.started_with = trainer.manager.get_plugin("early_stopping").state_dict()


def resumable_fit(root: Path, epochs: int, ckpt_path: Path | None = None) -> tuple[Any, Any]:
    spy = Spy()
    callback = HooklineCallback(plugins=[spy], early_stopping=True, patience=3, min_delta=0.3,
                                save_dir=root / "run")
    saver = ModelCheckpoint(dirpath=root / "ckpt", save_last=True)
    trainer = make_trainer(root, [callback, saver], epochs=epochs, logger=False,
                           enable_checkpointing=True)
    trainer.fit(Regression(), *loaders(), ckpt_path=ckpt_path)
    return trainer, spy


def test_resume_from_lightnings_checkpoint_restores_plugin_state(tmp_path: Path) -> None:
    """Stopped after 5 epochs and resumed from Lightning's last.ckpt, the run stops at the same
    epoch as an uninterrupted one, because the early-stopping counters came back (afresh,
    its best would be epoch 6's, and it would stop after epoch 9 instead of 10)."""
    whole, _ = resumable_fit(tmp_path / "whole", epochs=12)
    first, _ = resumable_fit(tmp_path / "first", epochs=5)
    last = tmp_path / "first" / "ckpt" / "last.ckpt"
    saved = torch.load(last, weights_only=True)["callbacks"]["HooklineCallback"]["plugins"]
    assert saved["early_stopping"]["wait"] == 1

    resumed, spy = resumable_fit(tmp_path / "resumed", epochs=12, ckpt_path=last)
    assert spy.started_with is not None
    assert spy.started_with["wait"] == 1
    assert spy.started_with["best"] == saved["early_stopping"]["best"]
    assert resumed.current_epoch == whole.current_epoch == 10
    assert first.current_epoch == 5
    rows = read_csv(tmp_path / "resumed" / "run" / "results.csv")
    assert [int(row["epoch"]) for row in rows] == [6, 7, 8, 9, 10]


# -- Lightning's DDP ------------------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_two_processes_write_once_and_agree_on_the_stop(tmp_path: Path) -> None:
    """Lightning DDP on 2 CPU processes: rank 1 alone asks to stop after epoch 2; both ranks
    stop there, and the rank-zero files hold each epoch once."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(JOBS / "lightning_ddp.py"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["current_epoch"] for r in ranks] == [2, 2]
    assert ranks[0]["stop_reason"] == "a stop was requested on another process"
    assert ranks[1]["stop_reason"] == "rank 1 had enough"
    rows = read_csv(tmp_path / "run" / "results.csv")
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ended"].startswith("stopped early")
