"""hookline's plugins inside a real Hugging Face ``Trainer`` (a tiny BERT built from its config,
random tokens, on the CPU; nothing downloaded), through
:class:`hookline.bridges.hf.HooklineCallback`."""

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
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import hookline  # noqa: E402
from hookline import SettingsError  # noqa: E402
from hookline.backends.torch.host import TorchHostState  # noqa: E402
from hookline.bridges.hf import HooklineCallback, hf_metric_name  # noqa: E402
from hookline.bridges.loop import UnsupportedHookWarning  # noqa: E402
from hookline.plugins.early_stopping import EarlyStopping  # noqa: E402
from hookline.plugins.lr_scheduler import LRScheduler  # noqa: E402
from hookline.testing import HookRecorder  # noqa: E402

BATCH = 8
TRAIN_ROWS = 32  # 4 optimizer steps per epoch
STEPS = TRAIN_ROWS // BATCH
JOBS = Path(__file__).parent / "bridge_jobs"


def make_model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )
    return transformers.BertForSequenceClassification(config)


def make_rows(rows: int, seed: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(0, 50, (8,), generator=generator),
            "labels": int(torch.randint(0, 2, (1,), generator=generator)),
        }
        for _ in range(rows)
    ]


TRAIN, VAL = make_rows(TRAIN_ROWS, 1), make_rows(16, 2)


def make_trainer(
    out: Path, callbacks: list[Any] | None, *, epochs: int = 3, model: Any = None,
    optimizers: tuple[Any, Any] = (None, None), **overrides: Any,
) -> Any:
    options: dict[str, Any] = {
        "eval_strategy": "epoch", "save_strategy": "no", "logging_strategy": "epoch",
        "learning_rate": 1e-2, "num_train_epochs": epochs,
        "per_device_train_batch_size": BATCH, "per_device_eval_batch_size": 16,
        **overrides,
    }
    args = transformers.TrainingArguments(
        output_dir=str(out), report_to=[], use_cpu=True, disable_tqdm=True, seed=0, **options
    )
    return transformers.Trainer(
        model=model if model is not None else make_model(), args=args, train_dataset=TRAIN,
        eval_dataset=VAL, callbacks=callbacks, optimizers=optimizers,
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as file:
        return list(csv.DictReader(file))


def host_logs(trainer: Any, key: str) -> list[dict[str, Any]]:
    """The Trainer's own log records that carry ``key``."""
    return [record for record in trainer.state.log_history if key in record]


def test_metric_names_map_to_hooklines():
    assert hf_metric_name("eval_loss") == "val/loss"
    assert hf_metric_name("eval_accuracy") == "val/accuracy"
    assert hf_metric_name("loss") == "train/loss"
    assert hf_metric_name("learning_rate") == "lr"
    assert hf_metric_name("grad_norm") == "train/grad_norm"
    assert hf_metric_name("train_loss") == "train/loss"


def test_an_unknown_setting_is_one_line_naming_the_closest():
    with pytest.raises(SettingsError, match=r"patiense.*patience"):
        HooklineCallback(early_stopping=True, patiense=3)
    with pytest.raises(SettingsError, match="csv"):
        HooklineCallback(csv="maybe")


def test_a_plugin_with_a_hook_the_trainer_cannot_fire_is_warned_once():
    class Backward(hookline.Callback):
        def on_after_backward(self) -> None:
            pass

    with pytest.warns(UnsupportedHookWarning, match="on_after_backward.*Hugging Face Trainer"):
        HooklineCallback(plugins=[Backward()])


def test_observers_checkpoint_and_an_installed_plugin_match_the_trainers_own_logs(
    tmp_path, epoch_timer_installed
):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupportedHookWarning)  # the defaults warn of nothing
        callback = HooklineCallback(checkpoint=True)
    assert callback.loop.manager.has_plugin(epoch_timer_installed)
    out = tmp_path / "out"
    trainer = make_trainer(out, [callback], epochs=3)
    trainer.train()

    # save_dir is the Trainer's output_dir; one row per epoch with the host's own numbers
    rows = read_rows(out / "results.csv")
    evaluations, train_logs = host_logs(trainer, "eval_loss"), host_logs(trainer, "loss")
    assert len(evaluations) == len(train_logs) == 3
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert [int(row["step"]) for row in rows] == [record["step"] for record in evaluations]
    assert [float(row["val/loss"]) for row in rows] == pytest.approx(
        [record["eval_loss"] for record in evaluations], rel=1e-9
    )
    assert [float(row["train/loss"]) for row in rows] == pytest.approx(
        [record["loss"] for record in train_logs], rel=1e-9
    )
    assert [float(row["lr"]) for row in rows] == pytest.approx(
        [record["learning_rate"] for record in train_logs], rel=1e-9
    )
    assert all(float(row["time/epoch"]) > 0 for row in rows)  # the installed plugin
    for bookkeeping in ("epoch", "train/epoch", "total_flos", "train/total_flos", "val/runtime"):
        assert bookkeeping not in rows[0] or bookkeeping == "epoch"
    assert not any(name.startswith("train/train_") for name in rows[0])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ended"] == "finished"
    assert summary["epochs"] == 3
    assert summary["steps"] == 3 * STEPS
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records if record["phase"] == "epoch"] == [1, 2, 3]
    assert "Hugging Face Trainer" in (out / "args.yaml").read_text()

    # the checkpoint plugin wrote hookline-format files with the Trainer's model and optimizer
    last = out / "weights" / "last.pt"
    assert last.is_file()
    assert (out / "weights" / "best.pt").is_file()
    fresh = make_model(seed=123)
    host = make_trainer(tmp_path / "fresh", None, model=fresh)
    host.create_optimizer()  # the Trainer's own AdamW, with its two parameter groups
    task = TorchHostState(fresh, host.optimizer)
    checkpoint = hookline.load_checkpoint(last, task)
    assert checkpoint["progress"]["epoch"] == 3
    assert checkpoint["progress"]["global_step"] == 3 * STEPS
    task.load_state_dict(checkpoint["task"])
    trained = trainer.model.state_dict()
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(value, trained[name])
    assert task.optimizer.state_dict()["state"]  # the Trainer's AdamW moments came along


def test_the_trainers_events_fire_hooklines_hooks_in_the_engines_order(tmp_path):
    callback = HooklineCallback(csv=False, jsonl=False, summary=False, resources=False,
                                plots=False, save=False, slow_plugins=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedHookWarning)  # the listener has them all
        with HookRecorder(callback.loop.manager, listen_all=True) as recorder:
            # 4 batches, 2 per optimizer step: a Trainer step (a hookline batch) is 2 batches
            trainer = make_trainer(tmp_path / "out", [callback], epochs=2,
                                   gradient_accumulation_steps=2)
            trainer.train()
    wanted = {
        "on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start",
        "on_train_epoch_start", "on_train_batch_start", "on_before_optimizer_step",
        "on_params_update", "on_before_zero_grad", "on_train_batch_end", "on_val_start",
        "on_val_batch_end", "on_val_end", "on_train_epoch_end", "on_fit_epoch_end",
        "on_train_end", "teardown",
    }
    step = ["on_train_batch_start", "on_before_optimizer_step", "on_params_update",
            "on_before_zero_grad", "on_train_batch_end"]
    epoch = [
        "on_train_epoch_start", *step, *step, "on_log",  # the Trainer's epoch-end train log
        "on_val_start", "on_val_batch_end", "on_val_end",
        "on_train_epoch_end", "on_fit_epoch_end", "on_log",
    ]
    names = [name for name in recorder.names if name in wanted or name == "on_log"]
    assert names == [
        "on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start",
        *epoch, *epoch, "on_train_end", "teardown",
    ]
    ends = recorder.of("on_train_batch_end")
    assert [call.kwargs["batch_idx"] for call in ends] == [0, 1, 0, 1]
    phases = [call.kwargs["phase"] for call in recorder.of("on_log")]
    assert phases == ["train", "epoch", "train", "epoch"]
    steps = [call.kwargs["step"] for call in recorder.of("on_log")]
    assert steps == [2, 2, 4, 4]
    assert [call.kwargs["epoch"] for call in recorder.of("on_log")] == [0, 0, 1, 1]


def predicted_stop(values: list[float], patience: int, min_delta: float) -> int:
    """The epochs (1-based count) after which Keras-style early stopping ends training."""
    best, wait = None, 0
    for epoch, value in enumerate(values, start=1):
        if best is None or value < best - min_delta:
            best, wait = value, 0
            continue
        wait += 1
        if wait >= patience:
            return epoch
    return len(values)


def test_early_stopping_stops_the_trainer_at_the_predicted_epoch(tmp_path):
    callback = HooklineCallback(early_stopping=True, patience=2, min_delta=0.002)
    epochs = 10
    trainer = make_trainer(tmp_path / "out", [callback], epochs=epochs, learning_rate=3e-2)
    trainer.train()
    losses = [record["eval_loss"] for record in host_logs(trainer, "eval_loss")]
    # the prediction from every value the Trainer reported, up to where it stopped
    stop = predicted_stop(losses, patience=2, min_delta=0.002)
    assert stop < epochs, "the data should make early stopping stop before the last epoch"
    assert len(losses) == stop
    assert trainer.state.global_step == stop * STEPS
    assert callback.run is not None
    assert "early stopping" in (callback.run.stop_reason or "")
    rows = read_rows(tmp_path / "out" / "results.csv")
    assert len(rows) == stop


def test_a_plugins_learning_rate_is_the_one_each_step_uses_over_the_trainers_scheduler(tmp_path):
    epochs, base = 3, 0.1
    steps = epochs * STEPS

    def run(plugins: list[Any], **settings: Any) -> tuple[list[float], Any]:
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=base)
        used: list[float] = []
        optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"])
        )
        callback = HooklineCallback(plugins=plugins, **settings)
        # the Trainer builds its own linear-decay scheduler over this optimizer
        trainer = make_trainer(
            tmp_path / f"out{len(plugins)}", [callback], epochs=epochs, model=model,
            optimizers=(optimizer, None),
        )
        trainer.train()
        return used, trainer

    # a per-step cosine schedule given as a plugin instance
    used, trainer = run([LRScheduler(interval="step", schedule="cosine")])
    expected = [base * (1 + math.cos(math.pi * step / steps)) / 2 for step in range(steps)]
    host_linear = [base * (1 - step / steps) for step in range(steps)]
    assert used == pytest.approx(expected, rel=1e-9)
    assert max(abs(a - b) for a, b in zip(used, host_linear, strict=True)) > 1e-2
    # the lr logged with each training log is the rate the epoch's last step used (the
    # Trainer's own learning_rate is its scheduler's, which the step did not use)
    out = tmp_path / "out1"
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last_steps = [expected[STEPS * (epoch + 1) - 1] for epoch in range(epochs)]
    lrs = [record["metrics"]["lr"] for record in logged if record["phase"] == "train"]
    assert lrs == pytest.approx(last_steps, rel=1e-9)
    assert [record["learning_rate"] for record in host_logs(trainer, "loss")] != pytest.approx(
        last_steps
    )

    # a per-epoch step decay by flag and settings: constant within an epoch, halved after each
    used, _ = run([], lr_scheduler=True, schedule="step", lr_step_size=1, lr_gamma=0.5)
    assert used == pytest.approx(
        [base * 0.5 ** (step // STEPS) for step in range(steps)], rel=1e-9
    )
    rows = read_rows(tmp_path / "out0" / "results.csv")
    # the lr column: the rate the plugin set for the next epoch, reported at each epoch end
    assert [float(row["lr"]) for row in rows] == pytest.approx(
        [base * 0.5**epoch for epoch in range(epochs)]
    )


class Broken(hookline.Callback):
    """An observer that fails at its first epoch end."""

    error_policy = "disable"

    def __init__(self) -> None:
        self.calls = 0

    def on_train_epoch_end(self) -> None:
        self.calls += 1
        raise RuntimeError("broken observer")


def test_a_failing_observer_is_disabled_and_the_trainer_trains_on(tmp_path):
    broken = Broken()
    callback = HooklineCallback(plugins=[broken])
    trainer = make_trainer(tmp_path / "out", [callback], epochs=3)
    trainer.train()
    assert broken.calls == 1
    assert trainer.state.global_step == 3 * STEPS
    assert len(read_rows(tmp_path / "out" / "results.csv")) == 3
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ended"] == "finished"
    assert len(summary["plugin_failures"]) == 1
    assert "broken observer" in json.dumps(summary["plugin_failures"])


class Ending(hookline.Callback):
    """Records how the run ended."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_exception(self, exception: BaseException) -> None:
        self.events.append(("on_exception", exception))

    def teardown(self) -> None:
        self.events.append(("teardown", None))


@pytest.mark.parametrize("added", ["at_init", "with_add_callback"])
def test_an_exception_in_the_models_forward_reaches_on_exception_and_teardown(tmp_path, added):
    model = make_model()
    calls = {"n": 0}

    def fail_on_the_sixth_forward(module: Any, inputs: Any) -> None:
        calls["n"] += 1
        if module.training and calls["n"] == 6:
            raise RuntimeError("the forward failed")

    model.register_forward_pre_hook(fail_on_the_sixth_forward)
    ending = Ending()
    callback = HooklineCallback(plugins=[ending])
    out = tmp_path / "out"
    if added == "at_init":
        trainer = make_trainer(out, [callback], model=model)
    else:
        trainer = make_trainer(out, None, model=model)
        trainer.add_callback(callback)
    with pytest.raises(RuntimeError, match="the forward failed") as raised:
        trainer.train()
    assert [name for name, _ in ending.events] == ["on_exception", "teardown"]
    assert ending.events[0][1] is raised.value
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ended"] == "failed: RuntimeError: the forward failed"
    assert summary["epochs"] == 1  # epoch 1 ended; epoch 2 failed at its second step
    assert len(read_rows(out / "results.csv")) == 1


class StateAtStart(hookline.Callback):
    """Keeps early stopping's counters as ``on_train_start`` sees them."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] | None = None

    def on_train_start(self, trainer: Any) -> None:
        stopper = trainer.manager.get_plugin("early_stopping")
        self.seen = {"wait": stopper.wait, "best": stopper.best}


@pytest.mark.parametrize("restore_flag", [False, True])
def test_resuming_from_the_trainers_checkpoint_restores_plugin_state(tmp_path, restore_flag):
    # min_delta so large that only the first epoch counts as an improvement: with patience 3
    # an uninterrupted run stops after epoch 4, whatever the losses
    settings = {"early_stopping": True, "patience": 3, "min_delta": 100.0}
    epochs = 8
    first_out = tmp_path / "first"
    first = HooklineCallback(**settings)
    trainer = make_trainer(
        first_out, [first], epochs=epochs, save_strategy="epoch",
        restore_callback_states_from_checkpoint=restore_flag,
    )
    trainer.train()
    assert trainer.state.global_step == 4 * STEPS  # uninterrupted: stopped after epoch 4

    # resume from the checkpoint after epoch 2 (wait == 1) in a new Trainer and new callback
    checkpoint = first_out / f"checkpoint-{2 * STEPS}"
    saved = json.loads((checkpoint / "trainer_state.json").read_text())
    saved_state = saved["stateful_callbacks"]["HooklineCallback"]["attributes"]
    assert saved_state["hookline_state"]["plugins"]["early_stopping"]["wait"] == 1
    probe = StateAtStart()
    second = HooklineCallback(plugins=[probe], **settings)
    resumed = make_trainer(
        first_out, [second], epochs=epochs, save_strategy="epoch",
        restore_callback_states_from_checkpoint=restore_flag,
    )
    resumed.train(resume_from_checkpoint=str(checkpoint))
    first_loss = host_logs(trainer, "eval_loss")[0]["eval_loss"]
    assert probe.seen == {"wait": 1, "best": pytest.approx(first_loss, rel=1e-9)}
    # the same stop as the uninterrupted run (a fresh early stopping would run 2 epochs more)
    assert resumed.state.global_step == 4 * STEPS
    assert second in resumed.callback_handler.callbacks  # the Trainer kept this instance
    rows = read_rows(first_out / "results.csv")
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]


def test_non_json_plugin_state_travels_as_the_tasks_payload(tmp_path):
    # restore_best_weights keeps tensors in early stopping's state: not JSON
    stopper = EarlyStopping(patience=10, restore_best_weights=True)
    callback = HooklineCallback(plugins=[stopper])
    trainer = make_trainer(tmp_path / "out", [callback], epochs=2, save_strategy="epoch")
    trainer.train()
    checkpoint = tmp_path / "out" / f"checkpoint-{2 * STEPS}"
    saved = json.loads((checkpoint / "trainer_state.json").read_text())
    encoded = saved["stateful_callbacks"]["HooklineCallback"]["attributes"]["hookline_state"]
    assert encoded["format"] == "torch"
    assert encoded["payload"]

    again = EarlyStopping(patience=10, restore_best_weights=True)
    second = HooklineCallback(plugins=[again])
    resumed = make_trainer(tmp_path / "out", [second], epochs=3, save_strategy="epoch")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert again.best_state is not None
    assert set(again.best_state) >= {"model"}


@pytest.mark.slow
def test_under_torchrun_rank_zero_writes_once_and_a_stop_is_agreed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(JOBS / "hf_ddp.py"), str(out),
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [report["world_size"] for report in reports] == [2, 2]
    # rank 1 alone asked to stop after epoch 2: both ranks stopped there
    steps = reports[0]["steps_per_epoch"]
    assert [report["global_step"] for report in reports] == [2 * steps, 2 * steps]
    assert reports[1]["stop_reason"] == "vote on rank 1"
    assert reports[0]["stop_reason"] == "a stop was requested on another process"
    rows = read_rows(out / "results.csv")
    assert [int(row["epoch"]) for row in rows] == [1, 2]  # written once, by rank zero
    records = (out / "metrics.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["phase"] == "epoch" for line in records) == 2
