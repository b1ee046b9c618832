"""hookline.Model: the four phases on one object, sharing plugins and callbacks."""

from __future__ import annotations

import csv

import pytest
import yaml

torch = pytest.importorskip("torch")

import hookline  # noqa: E402
from hookline import Callback, Model, PluginManager  # noqa: E402
from hookline.flags import FLAGS_PLUGIN  # noqa: E402
from hookline.plugins import BUILTINS, DEFAULT_FLAGS  # noqa: E402

# the built-ins on by default, and the plugin that declares the flags as settings
ON_BY_DEFAULT = {flag for flag, on in DEFAULT_FLAGS.items() if on} | {FLAGS_PLUGIN}
from tests.installed import install_counter  # noqa: E402
from tests.test_torch_backend import batches, blobs, make_task  # noqa: E402


class PhaseLog(Callback):
    def __init__(self):
        self.events = []

    def on_train_end(self, trainer):
        self.events.append(("train_end", trainer.epoch))

    def on_val_end(self, metrics):
        self.events.append(("val_end", round(metrics["val/accuracy"], 6)))

    def on_predict_end(self, predictor):
        self.events.append(("predict_end", len(predictor.results)))

    def on_export_end(self, artifact):
        self.events.append(("export_end", artifact.suffix))


def test_one_object_runs_all_four_phases_with_shared_plugins(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    log = PhaseLog()
    epochs_seen = []
    model = Model(make_task(), plugins=[log], manager=PluginManager())
    model.add_callback("on_epoch_end", lambda trainer: epochs_seen.append(trainer.epoch))
    metrics = model.train(batches(), batches(seed=1), epochs=3)
    val = model.validate(batches(seed=1))
    results = model.predict([blobs(10)[0]])
    artifact = model.export("pt2")

    assert epochs_seen == [0, 1, 2]
    assert val["val/accuracy"] == pytest.approx(metrics["val/accuracy"])
    phases = [event for event, _ in log.events]
    assert phases == [
        "val_end", "val_end", "val_end", "train_end", "val_end", "predict_end", "export_end"
    ]
    assert log.events[4] == ("val_end", round(val["val/accuracy"], 6))
    assert log.events[-1] == ("export_end", ".pt2")
    run_dir = tmp_path / "runs" / "train" / "exp"
    assert model.trainer is not None
    assert model.trainer.save_dir == run_dir.relative_to(tmp_path)
    assert (run_dir / "weights" / "last.pt").is_file()
    assert artifact == run_dir.relative_to(tmp_path) / "weights" / "model.pt2"
    assert yaml.safe_load((run_dir / "args.yaml").read_text())["epochs"] == 3
    with open(tmp_path / "runs" / "predict" / "exp" / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["index"] for row in rows] == [str(i) for i in range(10)]
    assert len(results[0]) == 10
    printed = capsys.readouterr().out
    assert "epoch 3/3" in printed
    assert "validation  val/loss" in printed


def test_flags_turn_builtins_off_and_on(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    manager = PluginManager()
    model = Model(make_task(), manager=manager)
    with pytest.warns(UserWarning, match="no run directory"):
        model.train(batches(), epochs=1, verbose=False, save=False)
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "runs").exists()
    assert {info.name for info in manager.list_plugins()} == ON_BY_DEFAULT - {
        "verbose", "save"
    }
    model.train(batches(), epochs=1, save=True, verbose=False, project="out", name="try")
    assert (tmp_path / "out" / "train" / "try" / "weights" / "last.pt").is_file()
    model.train(
        batches(), epochs=1, verbose=False, project="out", name="try", checkpoint=False,
        early_stopping=False,
    )
    assert (tmp_path / "out" / "train" / "try2" / "args.yaml").is_file()
    assert not (tmp_path / "out" / "train" / "try2" / "weights").exists()
    assert {info.name for info in manager.list_plugins()} == ON_BY_DEFAULT - {
        "verbose", "checkpoint", "early_stopping"
    }


def test_the_bare_engine_knows_no_builtin_and_stays_silent(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    manager = PluginManager()
    trainer = hookline.Trainer(make_task(), manager=manager)
    trainer.fit(batches(), epochs=1)
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().out == ""
    with pytest.raises(hookline.SettingsError, match="unknown setting 'verbose'"):
        trainer.fit(batches(), epochs=1, verbose=True)
    assert manager.list_plugins() == []  # nothing was registered behind the user's back
    trainer.fit(batches(), epochs=1, save_dir="explicit")
    assert not (tmp_path / "explicit").exists()  # the engine writes no file


def test_a_bare_phase_registers_exactly_the_plugins_it_is_given(epoch_timer_installed):
    task = make_task()
    for phase in (hookline.Trainer, hookline.Validator, hookline.Predictor, hookline.Exporter):
        assert phase(task).manager.list_plugins() == []
    log = PhaseLog()
    assert hookline.Trainer(task, [log]).manager.list_name_plugin() == [("PhaseLog", log)]
    # the model, like the command line, loads the installed plugins
    assert Model(task).manager.has_plugin(epoch_timer_installed)


def test_an_installed_plugin_given_explicitly_is_registered_once(
    tmp_path, tmp_path_factory, monkeypatch, capsys
):
    install_counter(monkeypatch, tmp_path_factory.mktemp("site"))
    from hookline_counter import Counter

    counter = Counter()  # state under the key "counter", as the installed copy's
    model = Model(make_task(), plugins=[counter])
    assert model.manager.get_plugin("counter") is counter
    names = [info.name for info in model.manager.list_plugins()]
    assert names.count("counter") == 1
    assert "Counter" not in names
    model.train(batches(), batches(seed=1), epochs=2, project=str(tmp_path), verbose=False,
                plots=False)
    assert counter.epochs == 2
    assert capsys.readouterr().out.splitlines() == ["counted 1", "counted 2"]
    # the very object the entry point names (here: an instance) is not registered twice
    assert model.manager.register(counter) == "counter"


def test_a_misspelt_flag_names_the_right_one():
    with pytest.raises(hookline.SettingsError, match="did you mean 'verbose'"):
        Model(make_task(), manager=PluginManager()).train(batches(), epochs=1, verbos=False)
    assert {builtin.flag for builtin in BUILTINS} >= {"verbose", "save"}


class Batches(list):
    """Batches that can be referred to weakly (a list cannot)."""


def test_a_model_let_go_frees_its_task_trainer_and_data_at_once(backend, tmp_path):
    """With the defaults on, dropping the Model frees the task (its parameters, on JAX its
    compiled programs), the trainer and the data as the last reference goes, without waiting
    for Python's cycle collector: a script that trains one model after another (a sweep) holds
    one at a time, not every earlier one until a collection happens to run."""
    import gc
    import weakref

    def train() -> dict[str, weakref.ref]:
        task, data = backend.make_task(), Batches(backend.batches(64, 16))
        model = Model(task, manager=PluginManager())
        model.train(data, Batches(backend.batches(32, 16, seed=1)), epochs=2,
                    project=str(tmp_path), plots=False)
        return {"task": weakref.ref(task), "trainer": weakref.ref(model.trainer),
                "data": weakref.ref(data)}

    train()  # a first run imports modules lazily (torch._dynamo), which may keep its frames
    gc.collect()
    gc.disable()
    try:
        left = train()
        assert [name for name, ref in left.items() if ref() is not None] == []
    finally:
        gc.enable()
