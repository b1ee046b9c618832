"""The LR scheduler plugin against torch's own schedulers stepped on their own."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.optim import lr_scheduler as schedulers  # noqa: E402

from hookline import PluginManager, Trainer  # noqa: E402
from hookline.plugins.lr_scheduler import LRScheduler  # noqa: E402
from tests.test_early_stopping import Script  # noqa: E402
from tests.test_torch_backend import batches, make_task  # noqa: E402

BASE_LR = 0.1  # make_task's SGD


def lone_optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)


def epoch_lrs(plugin: LRScheduler, epochs: int, *extra: object, **settings: object) -> list[float]:
    """The lr metric of each epoch (the rate used during that epoch)."""
    seen = []
    trainer = Trainer(make_task(), [plugin, *extra], manager=PluginManager())
    trainer.add_callback("on_fit_epoch_end", lambda metrics: seen.append(metrics["lr"]))
    trainer.fit(batches(64, 16), epochs=epochs, **settings)
    return seen


def test_epoch_scheduler_matches_torch_run_alone():
    plugin = LRScheduler(lambda opt: schedulers.StepLR(opt, step_size=2, gamma=0.5))
    optimizer = lone_optimizer()
    alone = schedulers.StepLR(optimizer, step_size=2, gamma=0.5)
    expected = []
    for _ in range(6):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        alone.step()
    assert epoch_lrs(plugin, 6) == pytest.approx(expected)
    assert expected == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_step_scheduler_matches_torch_run_alone():
    seen = []
    plugin = LRScheduler(lambda opt: schedulers.CosineAnnealingLR(opt, T_max=8), interval="step")
    trainer = Trainer(make_task(), [plugin], manager=PluginManager())
    trainer.add_callback("optimizer_step", lambda trainer: seen.append(
        trainer.task.optimizer.param_groups[0]["lr"]))
    trainer.fit(batches(64, 16), epochs=2)  # 4 steps per epoch
    optimizer = lone_optimizer()
    alone = schedulers.CosineAnnealingLR(optimizer, T_max=8)
    expected = []
    for _ in range(8):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        alone.step()
    assert seen == pytest.approx(expected)


def test_plateau_follows_the_monitored_metric_like_torch():
    losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8]
    plugin = LRScheduler(schedule="plateau", lr_factor=0.5, lr_patience=1)
    lrs = epoch_lrs(plugin, len(losses), Script("val/loss", losses))
    optimizer = lone_optimizer()
    alone = schedulers.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=1)
    expected = []
    for loss in losses:
        expected.append(optimizer.param_groups[0]["lr"])
        alone.step(loss)
    assert lrs == pytest.approx(expected)
    # by hand: no improvement at epochs 2 and 3 -> halve after 3; again after 6 and 7
    assert expected == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])


def test_linear_warmup_then_the_scheduler_takes_over():
    seen = []
    plugin = LRScheduler(
        lambda opt: schedulers.StepLR(opt, step_size=1, gamma=0.5), warmup_steps=4,
        warmup_start_factor=0.2,
    )
    trainer = Trainer(make_task(), [plugin], manager=PluginManager())
    trainer.add_callback("optimizer_step", lambda trainer: seen.append(
        round(trainer.task.optimizer.param_groups[0]["lr"], 10)))
    trainer.fit(batches(64, 16), epochs=3)
    # steps 1-4 warm up from 0.02 by 0.02; epoch 1 runs at the full 0.1 (the warm-up ended
    # inside epoch 0, so StepLR did not step there); epoch 2 at 0.05
    assert seen == [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]


def test_named_schedules_from_settings():
    lrs = epoch_lrs(LRScheduler(), 4, schedule="step", lr_step_size=1, lr_gamma=0.1)
    assert lrs == pytest.approx([0.1, 0.01, 0.001, 0.0001])
    assert epoch_lrs(LRScheduler(), 3) == pytest.approx([0.1, 0.1, 0.1])  # schedule=none


def test_an_unknown_schedule_is_refused():
    from hookline import SettingsError

    with pytest.raises(SettingsError, match="schedule must be one of none, step"):
        epoch_lrs(LRScheduler(), 1, schedule="cosin")
