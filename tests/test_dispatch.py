"""The engine's dispatch table: a hook without implementations never reaches pluggy."""

from __future__ import annotations

import pytest

from hookline import Callback, Predictor, Trainer, Validator
from hookline.testing import HookRecorder
from tests.conftest import regression_batches


def test_hooks_without_implementations_are_never_called_through_pluggy(task, manager):
    class OnlyEpochEnd(Callback):
        def on_train_epoch_end(self):
            pass

    manager.register(OnlyEpochEnd())
    with HookRecorder(manager) as recorder:
        Trainer(task, manager=manager).fit(
            regression_batches(16, 4), regression_batches(8, 4), epochs=3, log_every_n_steps=1
        )
        Validator(task, manager=manager).validate(regression_batches(8, 4))
        Predictor(task, manager=manager).predict(regression_batches(8, 4))
    assert recorder.names == ["on_train_epoch_end"] * 3


def test_dispatch_table_follows_register_and_unregister(manager):
    assert manager.dispatch == {}

    class A(Callback):
        def on_train_end(self):
            pass

        def on_log(self, metrics):
            pass

    plugin = A()
    manager.register(plugin)
    assert set(manager.dispatch) == {"on_train_end", "on_log"}
    manager.set_blocked("A")
    assert manager.dispatch == {}
    manager.unblock("A")
    function = lambda trainer: None  # noqa: E731
    manager.add_callback("on_epoch_end", function)
    assert set(manager.dispatch) == {"on_fit_epoch_end"}
    manager.remove_callback("on_epoch_end", function)
    assert manager.dispatch == {}


def test_a_plugin_registered_or_removed_mid_epoch_is_heard_from_the_next_batch(task, manager):
    seen: list[tuple[str, int]] = []

    class Late(Callback):
        def on_train_batch_start(self, batch_idx):
            seen.append(("start", batch_idx))

        def on_params_update(self, trainer):
            seen.append(("update", trainer.batch_idx))

    late = Late()

    def switch(trainer, batch_idx):
        if batch_idx == 1:
            trainer.manager.register(late)
        if batch_idx == 3:
            trainer.manager.unregister(late)

    manager.add_callback("on_train_batch_end", switch)
    Trainer(task, manager=manager).fit(regression_batches(12, 2), epochs=1)  # 6 batches
    assert seen == [("start", 2), ("update", 2), ("start", 3), ("update", 3)]


LOG_ARGUMENTS = {"run": None, "metrics": {}, "step": 0, "epoch": 0, "phase": "train"}


def test_rank_zero_only_plugins_cost_nothing_on_other_ranks(monkeypatch):
    from hookline import PluginManager, hookimpl

    calls = []

    class Writer(Callback):
        rank_zero_only = True

        def hookline_add_options(self, options):
            options.add("out", "x", help="where to write")

        def on_log(self):
            calls.append("writer")

        def on_train_end(self):
            calls.append("writer end")

    class Decider:
        @hookimpl
        def on_log(self):
            calls.append("decider")

    monkeypatch.setenv("RANK", "1")
    manager = PluginManager()
    manager.register(Writer())
    manager.register(Decider())
    assert set(manager.dispatch) == {"hookline_add_options", "on_log"}  # no on_train_end
    with HookRecorder(manager) as recorder:
        manager.call("on_log", **LOG_ARGUMENTS)
        settings = manager.configure({"out": "y"})
    assert calls == ["decider"]
    assert settings["out"] == "y"  # its settings are still declared on rank 1
    assert recorder.names == ["on_log", "hookline_add_options"]
    manager.set_rank(0)
    manager.call("on_log", **LOG_ARGUMENTS)
    assert sorted(calls[1:]) == ["decider", "writer"]
    assert "on_train_end" in manager.dispatch


class EveryBatch(Callback):
    """Counts batches when ``count_batches`` is on; its per-batch hook is idle otherwise."""

    def __init__(self) -> None:
        self.count_batches = False
        self.batches = 0

    def hookline_configure(self, settings) -> None:
        self.count_batches = settings.get("count_batches", False)

    def hookline_add_options(self, options) -> None:
        options.add("count_batches", False, help="count batches", owner="test")

    def idle_hooks(self):
        return () if self.count_batches else ("on_train_batch_end",)

    def on_train_batch_end(self) -> None:
        self.batches += 1


def test_idle_hooks_are_left_out_of_the_dispatch_table_after_configuration(task, manager):
    counter = EveryBatch()
    manager.register(counter)
    trainer = Trainer(task, manager=manager)
    trainer.fit(regression_batches(16, 4), epochs=1)
    assert counter.batches == 0
    assert "on_train_batch_end" not in manager.dispatch
    trainer.fit(regression_batches(16, 4), epochs=1, count_batches=True)
    assert counter.batches == 4
    assert "on_train_batch_end" in manager.dispatch
    # another plugin on the same hook is still called while this one is idle
    with HookRecorder(manager) as recorder:
        manager.add_callback("on_train_batch_end", lambda batch_idx: None)
        trainer.fit(regression_batches(16, 4), epochs=1)
    assert counter.batches == 4
    assert recorder.names.count("on_train_batch_end") == 4


def test_the_default_built_ins_make_no_per_batch_call_unless_their_options_ask(tmp_path):
    pytest.importorskip("torch")
    from hookline import Model, PluginManager
    from tests.test_torch_backend import batches, make_task

    manager = PluginManager()
    model = Model(make_task(), manager=manager)
    model.train(batches(64, 16), epochs=1, project=str(tmp_path), verbose=False)
    per_batch = {"on_train_batch_start", "on_before_backward", "on_after_backward",
                 "on_before_optimizer_step", "on_params_update", "on_before_zero_grad",
                 "on_train_batch_end"}
    assert per_batch.isdisjoint(manager.dispatch)  # progress goes to a non-terminal here
    model.train(batches(64, 16), epochs=1, project=str(tmp_path), verbose=False,
                time_limit=3600, save_every_n_steps=2, warmup_steps=2)
    assert {"on_params_update", "on_train_batch_end"} <= set(manager.dispatch)
    assert len(manager.dispatch["on_params_update"].get_hookimpls()) == 2
