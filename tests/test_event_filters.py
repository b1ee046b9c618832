"""Event filters: ``@hookline.every(...)`` and ``@hookline.once(...)`` implementations are
called exactly at their due steps or epochs, stay out of the dispatch table otherwise, and are
refused at registration where they could never be due."""

from __future__ import annotations

import pytest

import hookline
from hookline import PluginValidationError, Trainer
from hookline.testing import LinearRegressionTask, make_batches


def batches(count: int):
    rows = [[float(i % 5), 1.0] for i in range(count)]
    return make_batches(rows, [sum(row) for row in rows], 1)


class Filtered(hookline.Callback):
    """Records the trainer's position at each call of its filtered implementations."""

    def __init__(self):
        self.calls = {}

    def _record(self, hook, trainer):
        self.calls.setdefault(hook, []).append((trainer.epoch, trainer.global_step))

    @hookline.every(steps=4)
    def on_train_batch_end(self, trainer):
        self._record("every 4 steps", trainer)

    @hookline.once(step=6)
    def on_params_update(self, trainer):
        self._record("once at step 6", trainer)

    @hookline.every(epochs=2)
    def on_fit_epoch_end(self, trainer):
        self._record("every 2 epochs", trainer)

    @hookline.once(epoch=3)
    def on_train_batch_start(self, trainer):
        self._record("during epoch 3", trainer)


def test_filtered_implementations_are_called_exactly_at_their_due_steps(manager):
    plugin = Filtered()
    manager.register(plugin)
    Trainer(LinearRegressionTask(2, lr=0.01), manager=manager).fit(batches(5), epochs=4)
    # 5 batches an epoch, one optimizer step each: steps 1-5, 6-10, 11-15, 16-20
    assert plugin.calls["every 4 steps"] == [(0, 4), (1, 8), (2, 12), (3, 16), (3, 20)]
    assert plugin.calls["once at step 6"] == [(1, 6)]
    assert plugin.calls["every 2 epochs"] == [(1, 10), (3, 20)]
    assert plugin.calls["during epoch 3"] == [(2, 10), (2, 11), (2, 12), (2, 13), (2, 14)]


def test_under_gradient_accumulation_steps_count_optimizer_steps(manager):
    plugin = Filtered()
    manager.register(plugin)
    task = LinearRegressionTask(2, lr=0.01, accumulate_grad_batches=2)
    Trainer(task, manager=manager).fit(batches(9), epochs=1)
    # step 4 is taken at the end of the 8th batch, and the 9th batch still sees it (the last
    # step comes at the epoch's end): the batch hook fires for both
    assert plugin.calls["every 4 steps"] == [(0, 4), (0, 4)]


def test_a_filtered_hook_is_out_of_the_dispatch_table_while_not_due(manager):
    due_tables = []

    class Watcher(hookline.Callback):
        def on_train_batch_start(self, trainer):
            due_tables.append("on_train_batch_end" in trainer.manager.dispatch)

    class EveryThird(hookline.Callback):
        @hookline.every(steps=3)
        def on_train_batch_end(self):
            pass

    manager.register(Watcher())
    manager.register(EveryThird())
    Trainer(LinearRegressionTask(2, lr=0.01), manager=manager).fit(batches(7), epochs=1)
    # the table as each batch starts: due while global_step is 3 or 6
    assert due_tables == [False, False, False, True, False, False, True]
    assert "on_train_batch_end" not in manager.dispatch  # out of training: never due


def test_filters_work_on_add_callback_functions_and_hookimpl_functions(manager):
    steps = []

    @hookline.every(steps=2)
    def every_other_step(trainer):
        steps.append(trainer.global_step)

    manager.add_callback("on_params_update", every_other_step)
    Trainer(LinearRegressionTask(2, lr=0.01), manager=manager).fit(batches(5), epochs=1)
    assert steps == [2, 4]


def test_a_resumed_run_keeps_the_due_steps(manager):
    first = Filtered()
    manager.register(first, "filtered")
    trainer = Trainer(LinearRegressionTask(2, lr=0.01), manager=manager)
    trainer.fit(batches(5), epochs=2)
    resumed_manager = hookline.PluginManager()
    second = Filtered()
    resumed_manager.register(second, "filtered")
    resumed = Trainer(LinearRegressionTask(2, lr=0.01), manager=resumed_manager)
    resumed.load_checkpoint_state(trainer.checkpoint_state())
    resumed.fit(batches(5), epochs=4)
    assert second.calls["every 4 steps"] == [(2, 12), (3, 16), (3, 20)]
    assert second.calls["every 2 epochs"] == [(3, 20)]


@pytest.mark.parametrize("hook", ["on_train_start", "teardown", "on_predict_batch_end"])
def test_a_filter_on_a_hook_outside_the_epochs_is_refused(manager, hook):
    def implementation():
        pass

    plugin = type("Misfiltered", (hookline.Callback,),
                  {hook: hookline.every(steps=10)(implementation)})()
    with pytest.raises(PluginValidationError, match=f"'{hook}'.*every 10 steps.*never be due"):
        manager.register(plugin)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: hookline.every(), "give steps=N or epochs=N"),
        (lambda: hookline.every(steps=2, epochs=2), "give steps=N or epochs=N"),
        (lambda: hookline.every(steps=0), "steps must be an integer >= 1"),
        (lambda: hookline.once(step=1.5), "step must be an integer >= 1"),
    ],
)
def test_bad_filter_arguments_are_refused_where_written(make, message):
    with pytest.raises(ValueError, match=message):
        make()
