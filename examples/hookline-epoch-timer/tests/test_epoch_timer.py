"""The example plugin's own tests, written with hookline's pytest fixtures (the plugin-author
kit, which pytest loads wherever hookline is installed)."""

from __future__ import annotations

import csv

from hookline_epoch_timer import EpochTimer

import hookline
from hookline.testing.backends import installed

#: The demo the command line trains: on torch, or on JAX where torch is not installed.
RECIPE = "recipe=digits" if "torch" in installed() else "recipe=digits-jax"


def test_reports_each_epoch_on_every_backend(hookline_backend, hookline_manager):
    hookline_manager.register(EpochTimer(), "epoch_timer")
    trainer = hookline.Trainer(hookline_backend.make_task(), manager=hookline_manager)
    metrics = trainer.fit(
        hookline_backend.batches(rows=64, size=16), hookline_backend.batches(rows=32, seed=1),
        epochs=2, epoch_timer_unit="ms",
    )
    assert 0 < metrics["time/epoch"] < 60_000


def test_it_listens_to_the_epoch_hooks_only(hookline_recorder):
    hookline_recorder.manager.register(EpochTimer(), "epoch_timer")
    data = hookline.testing.make_batches([[1.0], [2.0]], [1.0, 2.0], 1)
    task = hookline.testing.LinearRegressionTask(1)
    hookline.Trainer(task, manager=hookline_recorder.manager).fit(data, epochs=2)
    timed = [call.name for call in hookline_recorder.calls if "epoch_timer" in call.plugins]
    assert timed == [
        "hookline_add_options", "hookline_configure",
        "on_train_epoch_start", "on_fit_epoch_end", "on_train_epoch_start", "on_fit_epoch_end",
    ]


def test_installed_it_times_every_command_line_run(hookline_cli):
    result = hookline_cli("train", RECIPE, "epochs=2", "epoch_timer_unit=ms")
    assert result.exit_code == 0, result.stderr
    with open(result.run_dir / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [0 < float(row["time/epoch"]) < 600_000 for row in rows] == [True, True]


def test_a_bad_unit_is_one_line_naming_the_setting(hookline_cli):
    result = hookline_cli("train", RECIPE, "epoch_timer_unit=h")
    assert result.exit_code == 2
    assert result.stderr == (
        "hookline train: error: setting 'epoch_timer_unit' must be one of 's', 'ms'; got 'h'\n"
    )
