"""What the hooks promise: the end of an epoch with its validation metrics under the Keras
name, final unscaled gradients before the step, and no silent misspelt call."""

from __future__ import annotations

import pytest

import hookline
from hookline import PluginManager, Trainer, UnknownHookError
from tests.conftest import regression_batches


def test_the_seed_callback_example_prints_the_validation_loss_every_epoch(task, capsys):
    class MyCallback(hookline.Callback):
        def on_epoch_end(self, trainer):
            print(f"Validation loss: {trainer.metrics.get('val/loss')}")

    trainer = Trainer(task, [MyCallback()], manager=PluginManager())
    trainer.fit(regression_batches(16, 4), regression_batches(8, 4, seed=1), epochs=3)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for line in lines:
        label, _, value = line.partition(": ")
        assert label == "Validation loss"
        assert float(value) > 0  # a number, not None


def test_calling_a_name_that_is_no_hook_raises_and_an_alias_is_a_hook(manager):
    with pytest.raises(UnknownHookError, match="'on_trian_end' is not a hookline hook; did you "
                                               "mean 'on_train_end'"):
        manager.call("on_trian_end", trainer=None)
    assert manager.call("on_train_end", trainer=None) == []  # a hook nobody implements
    seen = []
    manager.add_callback("on_before_optimizer_step", lambda trainer: seen.append(trainer) or 1)
    assert manager.call("optimizer_step", trainer="t") == [1]  # the Ultralytics name
    assert seen == ["t"]


def test_the_ultralytics_optimizer_step_name_still_implements_the_hook(task, manager):
    steps = []

    class Legacy(hookline.Callback):
        def optimizer_step(self, trainer):
            steps.append(trainer.global_step)

    Trainer(task, [Legacy()], manager=manager).fit(regression_batches(8, 4), epochs=2)
    assert steps == [0, 1, 2, 3]


def test_the_pre_step_hook_sees_unscaled_gradients_under_a_gradient_scaler():
    torch = pytest.importorskip("torch")
    from tests.test_torch_backend import batches, make_task

    data = batches(64, 16)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    task = make_task(grad_scaler=scaler)
    reference = make_task()  # the same initial weights, no scaling
    norms, expected = [], []

    def read_norm(trainer):
        norms.append(torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in trainer.task.model.parameters()])
        ).item())

    def read_reference(trainer):
        expected.append(torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in trainer.task.model.parameters()])
        ).item())

    trainer = Trainer(task, manager=PluginManager())
    trainer.add_callback("on_before_optimizer_step", read_norm)
    trainer.fit(data, epochs=1)
    plain = Trainer(reference, manager=PluginManager())
    plain.add_callback("on_before_optimizer_step", read_reference)
    plain.fit(data, epochs=1)
    assert scaler.get_scale() >= 2.0**12  # the loss really was scaled (and never overflowed)
    assert norms == pytest.approx(expected, rel=1e-5)
    for scaled, unscaled in zip(task.model.parameters(), reference.model.parameters(), strict=True):
        torch.testing.assert_close(scaled, unscaled)  # unscaled once: the same training


def test_clipping_under_a_gradient_scaler_unscales_once_with_or_without_a_listener():
    torch = pytest.importorskip("torch")
    from tests.test_torch_backend import batches, make_task

    data = batches(64, 16)
    runs = []
    for listen in (False, True):
        task = make_task(grad_scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10),
                         grad_clip_norm=0.05)
        trainer = Trainer(task, manager=PluginManager())
        if listen:
            trainer.add_callback("on_before_optimizer_step", lambda trainer: None)
        trainer.fit(data, epochs=1)
        runs.append([p.detach().clone() for p in task.model.parameters()])
    reference = make_task(grad_clip_norm=0.05)
    Trainer(reference, manager=PluginManager()).fit(data, epochs=1)
    for without, with_listener, plain in zip(*runs, reference.model.parameters(), strict=True):
        torch.testing.assert_close(without, with_listener)
        torch.testing.assert_close(without, plain.detach())


def test_every_hook_has_one_place_in_the_catalog_and_the_porting_table(manager):
    from hookline.cli.reference import PORTING
    from hookline.hookspecs import ALIASES, SECTIONS

    listed = [name for _, names in SECTIONS for name in names]
    assert sorted(listed) == sorted(manager.hook_names)  # each hook once, none missing
    assert [row[0] for row in PORTING] == [n for n in listed if n != "on_plugin_registered"
                                           and not n.startswith("hookline_")]
    assert set(ALIASES.values()) <= manager.hook_names
    assert not set(ALIASES) & manager.hook_names
