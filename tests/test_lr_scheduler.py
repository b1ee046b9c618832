"""The framework-free LR scheduler plugin, on each backend, against torch's own schedulers
stepped on their own, and the same plugin driving a task without any framework."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")  # its schedulers are the reference

from torch.optim import lr_scheduler as schedulers  # noqa: E402

from hookline import PluginManager, Trainer  # noqa: E402
from hookline.plugins.lr_scheduler import LRScheduler  # noqa: E402
from tests.conftest import regression_batches  # noqa: E402
from tests.test_early_stopping import Script  # noqa: E402

BASE_LR = 0.1  # make_task's SGD


def torch_rates(make_scheduler, steps: int, values: list[float] | None = None) -> list[float]:
    """The rate before each of ``steps`` steps of a torch scheduler run alone."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    scheduler = make_scheduler(optimizer)
    rates = []
    for index in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(*([] if values is None else [values[index]]))
    return rates


def epoch_lrs(backend, plugin: LRScheduler, epochs: int, *extra: object, **settings: object):
    """The lr metric of each epoch (the rate used during that epoch)."""
    seen = []
    trainer = Trainer(backend.make_task(), [plugin, *extra], manager=PluginManager())
    trainer.add_callback("on_fit_epoch_end", lambda metrics: seen.append(metrics["lr"]))
    trainer.fit(backend.batches(64, 16), epochs=epochs, **settings)
    return seen


def step_lrs(backend, plugin: LRScheduler, epochs: int, **settings: object) -> list[float]:
    """The rate the optimizer holds before each optimizer step (4 steps per epoch)."""
    seen = []
    trainer = Trainer(backend.make_task(), [plugin], manager=PluginManager())
    trainer.add_callback("on_before_optimizer_step", lambda trainer: seen.append(
        trainer.task.learning_rates()[0]))
    trainer.fit(backend.batches(64, 16), epochs=epochs, **settings)
    return seen


@pytest.mark.parametrize(
    ("settings", "make_scheduler"),
    [
        ({"schedule": "step", "lr_step_size": 2, "lr_gamma": 0.5},
         lambda opt: schedulers.StepLR(opt, step_size=2, gamma=0.5)),
        ({"schedule": "cosine"}, lambda opt: schedulers.CosineAnnealingLR(opt, T_max=6)),
        ({"schedule": "linear"}, lambda opt: schedulers.LambdaLR(opt, lambda e: 1 - e / 6)),
    ],
    ids=["step", "cosine", "linear"],
)
def test_epoch_schedules_match_torch_run_alone(backend, settings, make_scheduler):
    assert epoch_lrs(backend, LRScheduler(), 6, **settings) == pytest.approx(
        torch_rates(make_scheduler, 6), rel=backend.lr_precision
    )


def test_a_per_step_cosine_spans_the_whole_run_like_torch(backend):
    plugin = LRScheduler(interval="step", schedule="cosine")
    assert step_lrs(backend, plugin, 2) == pytest.approx(  # 2 epochs of 4 steps
        torch_rates(lambda opt: schedulers.CosineAnnealingLR(opt, T_max=8), 8),
        rel=backend.lr_precision,
    )


def test_a_multiplier_function_drives_the_rate_like_lambda_lr(backend):
    def halve_every_third(t):
        return 0.5 ** (t // 3)

    assert epoch_lrs(backend, LRScheduler(halve_every_third), 7) == pytest.approx(
        torch_rates(lambda opt: schedulers.LambdaLR(opt, halve_every_third), 7),
        rel=backend.lr_precision,
    )


def test_plateau_follows_the_monitored_metric_like_torch(backend):
    losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8]
    plugin = LRScheduler(schedule="plateau", lr_factor=0.5, lr_patience=1)
    lrs = epoch_lrs(backend, plugin, len(losses), Script("val/loss", losses))
    expected = torch_rates(
        lambda opt: schedulers.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=1),
        len(losses), losses,
    )
    assert lrs == pytest.approx(expected)
    # by hand: no improvement at epochs 2 and 3 -> halve after 3; again after 6 and 7
    assert expected == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])


def test_plateau_on_an_accuracy_waits_for_it_to_rise_like_torch_max_mode(backend):
    accuracies = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7]
    plugin = LRScheduler(schedule="plateau", lr_factor=0.5, lr_patience=1, monitor="val/acc")
    lrs = epoch_lrs(backend, plugin, len(accuracies), Script("val/acc", accuracies))
    assert lrs == pytest.approx(torch_rates(
        lambda opt: schedulers.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=1),
        len(accuracies), accuracies,
    ))


def test_linear_warmup_then_the_scheduler_takes_over(backend):
    plugin = LRScheduler(warmup_steps=4, warmup_start_factor=0.2)
    seen = step_lrs(backend, plugin, 3, schedule="step", lr_step_size=1, lr_gamma=0.5)
    # steps 1-4 warm up from 0.02 by 0.02; epoch 1 runs at the full 0.1 (the warm-up ended
    # inside epoch 0, so the schedule did not step there); epoch 2 at 0.05
    assert seen == pytest.approx(
        [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05],
        rel=backend.lr_precision, abs=0,
    )


def test_named_schedules_from_settings(backend):
    lrs = epoch_lrs(backend, LRScheduler(), 4, schedule="step", lr_step_size=1, lr_gamma=0.1)
    assert lrs == pytest.approx([0.1, 0.01, 0.001, 0.0001])
    assert epoch_lrs(backend, LRScheduler(), 3) == pytest.approx([0.1, 0.1, 0.1])  # schedule=none


def test_an_unknown_schedule_is_refused(backend):
    from hookline import SettingsError

    with pytest.raises(SettingsError, match="schedule must be one of none, step"):
        epoch_lrs(backend, LRScheduler(), 1, schedule="cosin")


def test_the_same_plugin_schedules_a_task_without_torch(task, manager):
    seen = []
    trainer = Trainer(task, [LRScheduler()], manager=manager)
    trainer.add_callback("on_train_epoch_start", lambda trainer: seen.append(trainer.task.lr))
    trainer.fit(regression_batches(8, 4), epochs=4, schedule="cosine")
    assert seen == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])


@pytest.mark.parametrize(
    ("settings", "sets"), [({}, [0.1]), ({"schedule": "step", "lr_step_size": 2},
                                         [0.1, 0.01, 0.001, 0.0001])],
    ids=["none", "step"],
)
def test_the_rates_are_set_at_the_start_then_only_when_the_schedule_changes_them(
    backend, settings, sets
):
    """Once at the start (that makes the rates the plugin's), then only when they change: a
    constant schedule sets nothing more (on JAX each set is a transfer to the device, once an
    epoch for nothing), a step schedule over 6 epochs sets the rate at its 3 steps (after
    epochs 2, 4 and 6)."""
    task = backend.make_task()
    calls = []
    set_rates = task.set_learning_rates
    task.set_learning_rates = lambda rates: (calls.append(list(rates)), set_rates(rates))[1]
    Trainer(task, [LRScheduler()], manager=PluginManager()).fit(
        backend.batches(64, 16), epochs=6, **settings)
    assert [rate for rates in calls for rate in rates] == pytest.approx(
        sets, rel=backend.lr_precision)

