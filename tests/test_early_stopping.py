"""Early stopping on scripted metric sequences, against hand-worked stopping epochs."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from hookline import Callback, SettingsError, Trainer, hookimpl
from hookline.plugins.early_stopping import EarlyStopping
from hookline.plugins.summary import RunSummary


class Script(Callback):
    """Replaces the monitored metric with a scripted value each epoch (before anyone reads it)."""

    def __init__(self, name: str, values: list[float]):
        self.name, self.values = name, values

    @hookimpl(tryfirst=True)
    def on_fit_epoch_end(self, trainer, metrics):
        metrics[self.name] = self.values[trainer.epoch]


def run(backend, manager, values, name="val/loss", **options):
    stopper = EarlyStopping(monitor=name, **options)
    trainer = Trainer(backend.make_task(), [stopper, Script(name, values)], manager=manager)
    trainer.fit(backend.batches(8, 4), epochs=len(values))
    return trainer, stopper


@pytest.mark.parametrize(
    ("values", "options", "last_epoch", "reason"),
    [
        # best 4 at epoch 1; epochs 2 and 3 do not improve: patience 2 runs out at epoch 3
        ([5, 4, 4, 4, 3], {"patience": 2}, 3, "has not improved for 2 epochs (best 4 at epoch 2)"),
        # min_delta 0.5: 4.6 is no improvement on 5, 4.2 is; 3.9 is not on 4.2, 3.0 is
        ([5, 4.6, 4.2, 3.9, 3.0], {"patience": 2, "min_delta": 0.5}, 4, None),
        # the baseline 3 is never beaten: epochs 0 and 1 count against patience 2
        ([5, 4, 3.5, 3.2], {"patience": 2, "baseline": 3.0}, 1, "(best 3 at the baseline)"),
        # epochs 0 and 1 are not watched; best 3 at epoch 2, no improvement at epoch 3
        ([1, 2, 3, 4, 5], {"patience": 1, "start_from_epoch": 2}, 3, "best 3 at epoch 3"),
        ([3, math.nan, 1], {"patience": 5}, 1, "val/loss is nan"),
        ([3, math.inf, 1], {"patience": 5}, 1, "val/loss is inf"),
        ([2, 1, 0.4, 0.3], {"stopping_threshold": 0.5}, 2, "reached 0.4 (threshold 0.5)"),
        ([2, 11, 1], {"divergence_threshold": 10.0}, 1, "diverged to 11 (limit 10)"),
    ],
    ids=["patience", "min-delta", "baseline", "start-from-epoch", "nan", "inf", "goal", "diverge"],
)
def test_stops_at_the_hand_worked_epoch(backend, manager, values, options, last_epoch, reason):
    trainer, stopper = run(backend, manager, values, **options)
    assert trainer.epoch == last_epoch
    if reason is None:
        assert not trainer.should_stop
        assert stopper.stopped_epoch is None
    else:
        assert trainer.stop_reason.startswith("early stopping: ")
        assert reason in trainer.stop_reason
        assert stopper.stopped_epoch == last_epoch


def test_accuracy_like_metrics_are_maximised(backend, manager):
    trainer, stopper = run(backend, manager, [0.5, 0.6, 0.6, 0.6, 0.9], "val/accuracy", patience=2)
    assert trainer.epoch == 3
    assert (stopper.best, stopper.best_epoch) == (0.6, 1)


def test_explicit_mode_overrides_auto(backend, manager):
    trainer, _ = run(backend, manager, [0.5, 0.6, 0.7], "val/accuracy", mode="min", patience=1)
    assert trainer.epoch == 1


def test_restore_best_weights_puts_back_the_best_epochs_state_and_says_so(backend, manager):
    weights = []
    stream = io.StringIO()
    trainer = Trainer(
        backend.make_task(),
        [EarlyStopping(patience=2, restore_best_weights=True, stream=stream),
         Script("val/loss", [3, 1, 2, 2, 0])],
        manager=manager,
    )
    trainer.add_callback(
        "on_fit_epoch_end", lambda trainer: weights.append(backend.weights(trainer.task))
    )
    trainer.fit(backend.batches(8, 4), epochs=5)
    assert trainer.epoch == 3
    final = backend.weights(trainer.task)
    assert all(np.array_equal(final[name], weights[1][name]) for name in final)
    assert not all(np.array_equal(final[name], weights[3][name]) for name in final)
    assert stream.getvalue() == "early stopping: restored the weights of epoch 2 (val/loss 1)\n"


def test_with_min_delta_the_restored_epoch_is_the_one_the_stop_line_names(backend, manager):
    weights = []
    stream = io.StringIO()
    # min_delta 0.5: 3 beats 5 (epoch 2); 2.8 and 2.7 are lower but do not count, and patience
    # runs out at epoch 4.  Keras restores epoch 2, the best that counted, not epoch 4 (2.7).
    stopper = EarlyStopping(patience=2, min_delta=0.5, restore_best_weights=True, stream=stream)
    trainer = Trainer(backend.make_task(), [stopper, Script("val/loss", [5, 3, 2.8, 2.7, 2.9])],
                      manager=manager)
    trainer.add_callback(
        "on_fit_epoch_end", lambda trainer: weights.append(backend.weights(trainer.task))
    )
    trainer.fit(backend.batches(8, 4), epochs=5)
    assert trainer.epoch == 3
    assert trainer.stop_reason.endswith("(best 3 at epoch 2)")
    final = backend.weights(trainer.task)
    assert all(np.array_equal(final[name], weights[1][name]) for name in final)
    assert stream.getvalue() == "early stopping: restored the weights of epoch 2 (val/loss 3)\n"


def test_a_baseline_first_beaten_by_min_delta_restores_that_epoch(backend, manager):
    stream = io.StringIO()
    # baseline 3, min_delta 0.5: 2.6 does not beat the baseline by the delta; 2.2 does (epoch
    # 3), and is what is restored, not 2.6 (the best while the baseline stood) nor 2.0
    stopper = EarlyStopping(patience=3, baseline=3.0, min_delta=0.5, restore_best_weights=True,
                            stream=stream)
    values = [3.5, 2.6, 2.2, 2.1, 2.0, 2.05]
    trainer = Trainer(backend.make_task(), [stopper, Script("val/loss", values)], manager=manager)
    trainer.fit(backend.batches(8, 4), epochs=6)
    assert trainer.stop_reason.endswith("(best 2.2 at epoch 3)")
    assert stream.getvalue() == "early stopping: restored the weights of epoch 3 (val/loss 2.2)\n"


def test_a_baseline_never_beaten_still_restores_the_best_epoch_seen(backend, manager):
    weights = []
    stream = io.StringIO()
    stopper = EarlyStopping(patience=3, baseline=3.0, restore_best_weights=True, stream=stream)
    trainer = Trainer(backend.make_task(), [stopper, Script("val/loss", [5, 4, 4.5])],
                      manager=manager)
    trainer.add_callback(
        "on_fit_epoch_end", lambda trainer: weights.append(backend.weights(trainer.task))
    )
    trainer.fit(backend.batches(8, 4), epochs=3)
    assert stopper.best_epoch is None  # the baseline was never beaten ...
    final = backend.weights(trainer.task)
    assert all(np.array_equal(final[name], weights[1][name]) for name in final)  # ... epoch 2
    assert stream.getvalue() == (
        "early stopping: restored the weights of epoch 2 (val/loss 4; the baseline 3 was never "
        "beaten)\n"
    )


class RealLoss(Callback):
    """Each epoch's validation loss as the validator computed it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    @hookimpl(trylast=True)
    def on_fit_epoch_end(self, metrics):
        self.losses.append(metrics["val/loss"])


def test_validating_after_a_restore_evaluates_the_restored_weights(backend, tmp_path):
    import hookline

    real = RealLoss()
    # a scripted score peaks at epoch 2 (index 1); the real validation loss keeps falling
    plugins = [real, Script("score", [0.1, 0.9, 0.5, 0.4])]
    model = hookline.Model(backend.make_task(), plugins, manager=hookline.PluginManager())
    val = backend.batches(64, 16, seed=1)
    model.train(
        backend.batches(64, 16), val, epochs=4, project=str(tmp_path), monitor="score",
        restore_best_weights=True, patience=5, verbose=False, progress=False, plots=False,
        resources=False, summary=False,
    )
    assert model.validate(val)["val/loss"] == pytest.approx(real.losses[1], rel=1e-6)
    assert real.losses[1] != pytest.approx(real.losses[-1], rel=1e-6)


def test_settings_override_constructor_arguments_only_when_given(backend, manager):
    stopper = EarlyStopping(patience=7)
    trainer = Trainer(backend.make_task(), [stopper], manager=manager)
    trainer.fit(backend.batches(4, 4), epochs=1)
    assert stopper.patience == 7
    trainer.fit(backend.batches(4, 4), epochs=1, patience="2")
    assert stopper.patience == 2


def test_the_run_summary_shows_the_stop_reason(backend, manager, capsys):
    run_plugins = [EarlyStopping(patience=1), Script("val/loss", [1, 2, 3]), RunSummary()]
    Trainer(backend.make_task(), run_plugins, manager=manager).fit(backend.batches(8, 4), epochs=3)
    summary = capsys.readouterr().out.strip().splitlines()
    assert summary[0].startswith("training stopped early: early stopping:")
    assert "val/loss has not improved for 1 epochs (best 1 at epoch 1)" in summary[0]
    assert summary[0].endswith("after 2/3 epochs, 4 steps, " + summary[0].split()[-2] + " s")
    assert summary[1].split() == ["best", "val/loss", "1", "at", "epoch", "1"]


def test_a_misspelt_monitor_is_an_error_at_the_first_epoch_end_naming_the_metrics(
    backend, manager
):
    trainer = Trainer(
        backend.make_task(),
        [EarlyStopping(monitor="val/f1", patience=1), Script("val/loss", [1, 1, 1])],
        manager=manager,
    )
    with pytest.raises(SettingsError, match="early stopping: setting 'monitor' names 'val/f1', "
                                            "which is not reported; the metrics are: "
                                            "train/loss, val/loss"):
        trainer.fit(backend.batches(8, 4), epochs=3)
    assert trainer.epoch == 0


def test_a_validation_monitor_without_validation_warns_once_and_never_stops(backend, manager):
    trainer = Trainer(
        backend.make_task(), [EarlyStopping(monitor="val/loss", patience=1)], manager=manager
    )
    with pytest.warns(UserWarning, match="'val/loss' is a validation metric and no validation "
                                         "ran") as caught:
        trainer.fit(backend.batches(8, 4), epochs=3)
    assert len([w for w in caught if "no validation ran" in str(w.message)]) == 1
    assert not trainer.should_stop
