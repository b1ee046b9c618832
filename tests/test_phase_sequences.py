"""The exact hook sequence of each phase, recorded with pluggy's hook-call monitoring."""

from __future__ import annotations

import pytest

import hookline
from hookline import Exporter, Predictor, Trainer, Validator
from tests.conftest import regression_batches

SETTINGS = ["hookline_add_options", "hookline_configure"]
TRAIN_START = ["on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start"]
BATCH_HEAD = ["on_train_batch_start", "on_before_backward", "on_after_backward"]
STEP = ["on_before_optimizer_step", "on_params_update", "on_before_zero_grad"]
BATCH = [*BATCH_HEAD, *STEP, "on_train_batch_end"]
VALIDATION = ["on_val_start", "on_val_batch_start", "on_val_batch_end", "on_val_end"]
EPOCH_END = ["on_train_epoch_end", *VALIDATION, "on_fit_epoch_end", "on_log"]


class Boom(RuntimeError):
    pass


def test_fit_with_validation_fires_every_training_hook_in_order(task, hookline_recorder):
    trainer = Trainer(task, manager=hookline_recorder.manager)
    trainer.fit(
        regression_batches(8, 4), regression_batches(4, 4, seed=1), epochs=2, log_every_n_steps=0
    )
    epoch = ["on_train_epoch_start", *BATCH, *BATCH, *EPOCH_END]
    assert hookline_recorder.names == [
        *SETTINGS, *TRAIN_START, *epoch, *epoch, "on_train_end", "teardown"
    ]
    assert trainer.global_step == 4
    assert [call.kwargs["batch_idx"] for call in hookline_recorder.of("on_train_batch_end")] == [
        0, 1, 0, 1
    ]
    logged = hookline_recorder.of("on_log")
    assert [(c.kwargs["phase"], c.kwargs["epoch"], c.kwargs["step"]) for c in logged] == [
        ("epoch", 0, 2), ("epoch", 1, 4)
    ]
    assert set(logged[-1].kwargs["metrics"]) == {"train/loss", "val/loss", "val/mae"}


def test_validation_runs_only_on_due_epochs(task, manager):
    validated = []
    trainer = Trainer(task, manager=manager)
    trainer.add_callback("on_val_start", lambda validator: validated.append(trainer.epoch))
    trainer.fit(regression_batches(4, 4), regression_batches(4, 4), epochs=4, val_every_n_epochs=2)
    assert validated == [1, 3]


def test_gradient_accumulation_steps_every_k_batches_and_flushes_the_rest(hookline_recorder):
    from hookline.testing import LinearRegressionTask

    task = LinearRegressionTask(3, accumulate_grad_batches=2)
    trainer = Trainer(task, manager=hookline_recorder.manager)
    trainer.fit(regression_batches(12, 4), epochs=1, log_every_n_steps=0)
    no_step = [*BATCH_HEAD, "on_train_batch_end"]
    stepped = [*BATCH_HEAD, *STEP, "on_train_batch_end"]
    assert hookline_recorder.names == [
        *SETTINGS, *TRAIN_START, "on_train_epoch_start", *no_step, *stepped, *no_step, *STEP,
        "on_train_epoch_end", "on_fit_epoch_end", "on_log", "on_train_end", "teardown",
    ]
    assert trainer.global_step == 2


def test_log_interval_reports_the_running_loss_between_intervals(task, hookline_recorder):
    Trainer(task, manager=hookline_recorder.manager).fit(
        regression_batches(16, 4), epochs=1, log_every_n_steps=2
    )
    logged = [(c.kwargs["phase"], c.kwargs["step"]) for c in hookline_recorder.of("on_log")]
    assert logged == [("train", 2), ("train", 4), ("epoch", 4)]
    positions = [i for i, name in enumerate(hookline_recorder.names) if name == "on_log"]
    assert hookline_recorder.names[positions[0] - 1] == "on_train_batch_end"


def test_stop_requested_mid_epoch_finishes_that_epoch_and_ends_training(task, hookline_recorder):
    def stop_in_second_epoch(trainer, batch_idx):
        if trainer.epoch == 1 and batch_idx == 0:
            trainer.request_stop("enough")
            trainer.request_stop("a later reason does not overwrite the first")

    trainer = Trainer(task, manager=hookline_recorder.manager)
    trainer.add_callback("on_train_batch_end", stop_in_second_epoch)
    hookline_recorder.clear()
    trainer.fit(regression_batches(8, 4), regression_batches(4, 4), epochs=5, log_every_n_steps=0)
    first_epoch = ["on_train_epoch_start", *BATCH, *BATCH, *EPOCH_END]
    cut_epoch = ["on_train_epoch_start", *BATCH, *EPOCH_END]
    assert hookline_recorder.names == [
        *SETTINGS, *TRAIN_START, *first_epoch, *cut_epoch, "on_train_end", "teardown"
    ]
    assert (trainer.epoch, trainer.should_stop, trainer.stop_reason) == (1, True, "enough")


def test_stop_at_train_start_runs_no_epoch(task, hookline_recorder):
    trainer = Trainer(task, manager=hookline_recorder.manager)
    trainer.add_callback("on_train_start", lambda trainer: trainer.request_stop("not today"))
    hookline_recorder.clear()
    trainer.fit(regression_batches(8, 4), epochs=3)
    assert hookline_recorder.names == [*SETTINGS, *TRAIN_START, "on_train_end", "teardown"]


def test_exception_in_training_fires_on_exception_then_teardown_then_propagates(
    task, hookline_recorder
):
    def explode(trainer, batch_idx):
        if trainer.epoch == 1 and batch_idx == 1:
            raise Boom("batch failed")

    trainer = Trainer(task, manager=hookline_recorder.manager)
    trainer.add_callback("on_train_batch_start", explode)
    hookline_recorder.clear()
    with pytest.raises(Boom, match="batch failed"):
        trainer.fit(regression_batches(8, 4), regression_batches(4, 4), epochs=3)
    epoch = ["on_train_epoch_start", *BATCH, *BATCH, *EPOCH_END]
    assert hookline_recorder.names == [
        *SETTINGS, *TRAIN_START, *epoch, "on_train_epoch_start", *BATCH,
        "on_train_batch_start", "on_exception", "teardown",
    ]
    (call,) = hookline_recorder.of("on_exception")
    assert isinstance(call.kwargs["exception"], Boom)
    assert call.kwargs["run"] is trainer


def test_failing_teardown_does_not_mask_the_original_error(task, manager):
    def broken_teardown():
        raise OSError("teardown failed too")

    trainer = Trainer(task, manager=manager)
    trainer.add_callback("on_train_start", lambda: (_ for _ in ()).throw(Boom("original")))
    trainer.add_callback("teardown", broken_teardown)
    with pytest.raises(Boom, match="original") as caught:
        trainer.fit(regression_batches(4, 4), epochs=1)
    assert any("teardown failed too" in note for note in getattr(caught.value, "__notes__", []))


def test_validator_alone(task, hookline_recorder):
    validator = Validator(task, manager=hookline_recorder.manager)
    metrics = validator.validate(regression_batches(12, 4))
    per_batch = ["on_val_batch_start", "on_val_batch_end"]
    assert hookline_recorder.names == [
        *SETTINGS, "on_val_start", *per_batch * 3, "on_val_end", "on_log", "teardown"
    ]
    assert hookline_recorder.of("on_log")[0].kwargs["phase"] == "val"
    assert set(metrics) == {"val/loss", "val/mae"}
    assert validator.trainer is None


def test_predictor_collects_every_batch(task, hookline_recorder):
    results = Predictor(task, manager=hookline_recorder.manager).predict(regression_batches(8, 4))
    per_batch = ["on_predict_batch_start", "on_predict_postprocess_end", "on_predict_batch_end"]
    assert hookline_recorder.names == [
        *SETTINGS, "on_predict_start", *per_batch * 2, "on_predict_end", "teardown"
    ]
    assert [len(batch) for batch in results] == [4, 4]


def test_exporter_writes_through_the_task(task, hookline_recorder, tmp_path):
    artifact = Exporter(task, manager=hookline_recorder.manager).export("json", tmp_path / "model")
    assert hookline_recorder.names == [*SETTINGS, "on_export_start", "on_export_end", "teardown"]
    assert hookline_recorder.of("on_export_start")[0].kwargs["format"] == "json"
    assert hookline_recorder.of("on_export_end")[0].kwargs["artifact"] == artifact
    assert artifact.is_file()


def test_exporter_refuses_an_unknown_format_before_any_hook(task, hookline_recorder, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'onnx'; available: json"):
        Exporter(task, manager=hookline_recorder.manager).export("onnx", tmp_path / "model")
    assert hookline_recorder.names == []


@pytest.mark.parametrize(
    ("make_phase", "failing_hook", "expected"),
    [
        (
            lambda task, m: lambda: Validator(task, manager=m).validate(regression_batches(8, 4)),
            "on_val_batch_end",
            [*SETTINGS, "on_val_start", "on_val_batch_start", "on_val_batch_end",
             "on_exception", "teardown"],
        ),
        (
            lambda task, m: lambda: Predictor(task, manager=m).predict(regression_batches(8, 4)),
            "on_predict_postprocess_end",
            [*SETTINGS, "on_predict_start", "on_predict_batch_start",
             "on_predict_postprocess_end", "on_exception", "teardown"],
        ),
        (
            lambda task, m: lambda: Exporter(task, manager=m).export("json", "/nonexistent/x"),
            None,
            [*SETTINGS, "on_export_start", "on_exception", "teardown"],
        ),
    ],
    ids=["validator", "predictor", "exporter"],
)
def test_each_phase_reports_an_exception_then_tears_down(
    task, hookline_recorder, make_phase, failing_hook, expected
):
    if failing_hook is not None:
        hookline_recorder.manager.add_callback(failing_hook, lambda: (_ for _ in ()).throw(Boom()))
        hookline_recorder.clear()
    with pytest.raises((Boom, OSError)):
        make_phase(task, hookline_recorder.manager)()
    assert hookline_recorder.names == expected


def test_checkpoint_state_round_trip_fires_the_state_hooks(task, hookline_recorder):
    class Counter(hookline.Callback):
        def __init__(self):
            self.batches = 0

        def on_train_batch_end(self):
            self.batches += 1

        def on_save_checkpoint(self, checkpoint):
            checkpoint["plugins"]["counter"] = {"batches": self.batches}

        def on_load_checkpoint(self, checkpoint):
            self.batches = checkpoint["plugins"]["counter"]["batches"]

    counter = Counter()
    trainer = Trainer(task, [counter], manager=hookline_recorder.manager)
    trainer.fit(regression_batches(8, 4), epochs=2)
    checkpoint = trainer.checkpoint_state()
    assert (checkpoint["progress"]["epoch"], checkpoint["progress"]["global_step"]) == (2, 4)
    assert checkpoint["progress"]["batches_done"] == 0
    counter.batches = 0
    hookline_recorder.clear()
    trainer.load_checkpoint_state(checkpoint)
    assert hookline_recorder.names == ["on_load_checkpoint"]
    assert (counter.batches, trainer.start_epoch, trainer.global_step) == (4, 2, 4)


class Events(hookline.Callback):
    """The train records and epoch ends, in the order they fire, with where the run was."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def on_log(self, run, metrics, step, epoch, phase) -> None:
        if phase == "train":
            self.seen.append(("log", epoch, step, run.global_step, metrics["train/loss"]))

    def on_train_epoch_end(self, trainer) -> None:
        self.seen.append(("epoch end", trainer.epoch))


class BatchEnds(hookline.Callback):
    """A per-batch listener: the step at each batch end."""

    def __init__(self, events: Events) -> None:
        self.events = events

    def on_train_batch_end(self, trainer) -> None:
        self.events.seen.append(("batch end", trainer.epoch, trainer.global_step))


def deferred_run(asynchronous: bool, *extra, events: Events | None = None,
                 fail_at: int | None = None) -> list[tuple]:
    """Two epochs of 16 steps, a record every 2; ``asynchronous``: the task's values are
    ready at every fourth readiness check; ``fail_at``: the task fails at that training step
    (1-based)."""
    from hookline.testing.toy import LinearRegressionTask

    task = LinearRegressionTask(n_features=3, lr=0.1)
    if asynchronous:
        checks = iter(range(10**6))
        task.is_ready = lambda value: next(checks) % 4 == 3
    if fail_at is not None:
        step, calls = task.training_step, iter(range(1, 10**6))

        def failing(batch):
            if next(calls) == fail_at:
                raise Boom("the device failed")
            return step(batch)

        task.training_step = failing
    events = events if events is not None else Events()
    plugins = [events, *(plugin(events) for plugin in extra)]
    Trainer(task, plugins, manager=hookline.PluginManager()).fit(
        regression_batches(64, 4), epochs=2, log_every_n_steps=2
    )
    return events.seen


def test_a_record_waits_for_an_asynchronous_loss_and_comes_before_the_epoch_ends():
    """A task whose values are computed asynchronously says when one is ready: the trainer
    delivers each interval's record once its loss is, a few batches later (here every fourth
    readiness check succeeds), with the interval's step, epoch and loss, oldest first, and
    before the epoch's end; the records are those of a run that waits for each loss."""
    waited, deferred = deferred_run(False), deferred_run(True)
    logs = [event for event in deferred if event[0] == "log"]
    assert [(epoch, step, loss) for _, epoch, step, _, loss in logs] == [
        (epoch, step, loss) for kind, epoch, step, _, loss in
        (event for event in waited if event[0] == "log")
    ]
    assert len(logs) == 16
    assert all(at == step for _, _, step, at, _ in (e for e in waited if e[0] == "log"))
    assert any(at > step for _, _, step, at, _ in logs)  # delivered batches later
    ends = [index for index, event in enumerate(deferred) if event[0] == "epoch end"]
    assert all(event[1] == 0 for event in deferred[: ends[0]])
    assert all(event[1] == 1 for event in deferred[ends[0] + 1: ends[1]])


def test_a_waiting_record_comes_before_any_later_hook_and_before_a_failure_ends_the_run():
    """With a per-batch listener every record comes right after its own step's batch end
    (before any later hook); a run that fails mid-epoch still delivers the records of the
    intervals before the failure, then raises."""
    seen = deferred_run(True, BatchEnds)
    logs = [index for index, event in enumerate(seen) if event[0] == "log"]
    assert len(logs) == 16
    for index in logs:
        assert seen[index - 1] == ("batch end", seen[index][1], seen[index][2])
    events = Events()
    with pytest.raises(Boom):
        deferred_run(True, events=events, fail_at=8)  # after 7 steps: records at 2, 4, 6
    assert [event[2] for event in events.seen if event[0] == "log"] == [2, 4, 6]
