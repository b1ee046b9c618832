"""The example third-party plugin (``examples/hookline-epoch-timer``), written against the
documented API only, runs unchanged on each backend: its metric reaches the CSV logger."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from hookline import PluginManager, Trainer
from hookline.flags import apply_flags

SOURCE = (
    Path(__file__).resolve().parents[1] / "examples" / "hookline-epoch-timer" / "src"
    / "hookline_epoch_timer" / "__init__.py"
)


def load_example():
    spec = importlib.util.spec_from_file_location("example_epoch_timer", SOURCE)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_the_example_plugin_reports_its_metric_on_each_backend(backend, tmp_path):
    manager = PluginManager()
    manager.register(load_example().EpochTimer(), "epoch_timer")
    apply_flags(manager, {"csv": True})
    trainer = Trainer(backend.make_task(), manager=manager)
    trainer.fit(backend.batches(64, 16), backend.batches(32, 16, seed=1), epochs=2,
                save_dir=tmp_path, csv=True, epoch_timer_unit="ms")
    with open(tmp_path / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2
    assert all(0 < float(row["time/epoch"]) < 60_000 for row in rows)
    assert all(float(row["val/accuracy"]) >= 0 for row in rows)
