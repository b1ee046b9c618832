"""The loggers, checked against the on_log stream the run reported: CSV and JSON lines with the
csv and json modules, and each experiment tracker through its own reader."""

from __future__ import annotations

import csv
import glob
import importlib.util
import json
import struct
from collections.abc import Mapping
from pathlib import Path

import pytest

from hookline import Callback, PluginManager, Trainer, UserError
from hookline.flags import apply_flags


class LogRecorder(Callback):
    """What the run reported through on_log, in order."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def on_log(self, metrics: Mapping[str, float], step: int, epoch: int, phase: str) -> None:
        self.records.append(
            {"phase": phase, "epoch": epoch + 1, "step": step, "metrics": dict(metrics)}
        )

    def of(self, phase: str) -> list[dict]:
        return [record for record in self.records if record["phase"] == phase]


def train(backend, save_dir: Path, epochs: int = 3, **settings: object) -> LogRecorder:
    recorder = LogRecorder()
    manager = PluginManager()
    apply_flags(manager, settings)  # the built-ins named by flags, as Model does
    trainer = Trainer(backend.make_task(), [recorder], manager=manager)
    trainer.fit(
        backend.batches(256, 16), backend.batches(64, 16, seed=1), epochs=epochs, save_dir=save_dir,
        log_every_n_steps=5, **settings,
    )
    return recorder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_has_one_row_per_epoch_and_jsonl_every_record(backend, tmp_path):
    recorder = train(backend, tmp_path, csv=True, jsonl=True)
    rows = read_csv(tmp_path / "results.csv")
    epochs = recorder.of("epoch")
    assert len(rows) == len(epochs) == 3
    for row, record in zip(rows, epochs, strict=True):
        assert int(row["epoch"]) == record["epoch"]
        assert int(row["step"]) == record["step"]
        assert {name: float(row[name]) for name in record["metrics"]} == record["metrics"]
        assert set(row) == {"epoch", "step", "time", *record["metrics"]}
    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert [{key: line[key] for key in ("phase", "epoch", "step", "metrics")} for line in lines] \
        == recorder.records
    assert len(recorder.of("train")) == 3 * 16 // 5  # every 5 of 16 steps, three epochs
    times = [line["time"] for line in lines]
    assert times == sorted(times)


class JSONLinesReader(Callback):
    """At each epoch's start, what ``metrics.jsonl`` holds on disk, with the file still open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[list[dict]] = []

    def on_train_epoch_start(self, trainer) -> None:
        if trainer.epoch > 0:
            self.seen.append(read_jsonl(self.path))


def test_metrics_jsonl_is_on_disk_up_to_each_epoch_record_while_the_run_goes_on(
    backend, tmp_path
):
    """Interval records may wait in the buffer for a second, an epoch's record is flushed with
    everything before it: a run killed in the next epoch keeps every epoch it finished."""
    reader = JSONLinesReader(tmp_path / "metrics.jsonl")
    recorder = LogRecorder()
    manager = PluginManager()
    apply_flags(manager, {"jsonl": True})
    trainer = Trainer(backend.make_task(), [recorder, reader], manager=manager)
    trainer.fit(backend.batches(256, 16), epochs=3, save_dir=tmp_path, log_every_n_steps=2,
                jsonl=True)
    assert len(reader.seen) == 2
    for finished, lines in enumerate(reader.seen, start=1):
        expected = [record for record in recorder.records if record["epoch"] <= finished]
        assert [{key: line[key] for key in ("phase", "epoch", "step", "metrics")}
                for line in lines] == expected
        assert lines[-1]["phase"] == "epoch"


def test_a_metric_that_appears_later_widens_the_csv(backend, tmp_path):
    recorder = train(backend, tmp_path, epochs=4, csv=True, val_every_n_epochs=2)
    rows = read_csv(tmp_path / "results.csv")
    assert [row["val/loss"] for row in rows][0::2] == ["", ""]
    assert [float(row["val/loss"]) for row in rows[1::2]] == [
        record["metrics"]["val/loss"] for record in recorder.of("epoch")[1::2]
    ]


def test_resuming_keeps_each_epoch_and_step_once(backend, tmp_path):
    train(backend, tmp_path, epochs=2, csv=True, jsonl=True, checkpoint=True)
    # records logged after the checkpoint was taken, by a run that then crashed
    with open(tmp_path / "results.csv", "a") as file:
        file.write("3,40,9.9,0.1,0.1,0.1\n")
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write(json.dumps({"phase": "train", "epoch": 3, "step": 35, "metrics": {}}) + "\n")
        file.write('{"phase": "tra')  # cut short by the crash
    resumed = train(
        backend, tmp_path, epochs=4, csv=True, jsonl=True, checkpoint=True,
        resume=str(tmp_path / "weights" / "last.pt"),
    )
    rows = read_csv(tmp_path / "results.csv")
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert [float(row["val/loss"]) for row in rows[2:]] == [
        record["metrics"]["val/loss"] for record in resumed.of("epoch")
    ]
    steps = [line["step"] for line in read_jsonl(tmp_path / "metrics.jsonl")]
    assert steps == sorted(steps)
    assert steps[-1] == 64
    train_steps = [s for s, line in zip(steps, read_jsonl(tmp_path / "metrics.jsonl"),
                                        strict=True) if line["phase"] == "train"]
    assert train_steps == list(range(5, 65, 5))


def test_without_a_run_directory_metric_files_write_nothing(backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manager = PluginManager()
    apply_flags(manager, {"csv": True, "jsonl": True})
    Trainer(backend.make_task(), manager=manager).fit(
        backend.batches(64, 16), epochs=1, csv=True, jsonl=True
    )
    assert list(tmp_path.iterdir()) == []


# -- experiment trackers, read back with their own readers ------------------------------------


def needs(module: str):
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} is not installed"
    )


@needs("tensorboard")
def test_tensorboard_scalars_and_hyperparameters(backend, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    recorder = train(backend, tmp_path, tensorboard=True)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    epochs = recorder.of("epoch")
    for name in epochs[0]["metrics"]:
        scalars = events.Scalars(name)
        assert [event.step for event in scalars] == [record["epoch"] for record in epochs]
        assert [event.value for event in scalars] == pytest.approx(  # stored as float32
            [record["metrics"][name] for record in epochs], rel=1e-6
        )
    interval = events.Scalars("train/loss_step")
    assert [event.step for event in interval] == [r["step"] for r in recorder.of("train")]
    assert [event.value for event in interval] == pytest.approx(
        [record["metrics"]["train/loss"] for record in recorder.of("train")], rel=1e-6
    )
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["epochs"].number_value == 3
    assert start.hparams["log_every_n_steps"].number_value == 5
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]
    ).experiment
    assert {info.name.tag for info in experiment.metric_infos} == set(epochs[0]["metrics"])


@needs("mlflow")
def test_mlflow_params_metrics_and_best_weights(backend, tmp_path):
    from mlflow import MlflowClient

    save_dir = tmp_path / "train" / "exp"
    recorder = train(backend, save_dir, mlflow=True, checkpoint=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'train' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("hookline")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "exp"
    assert run.data.params["epochs"] == "3"
    assert run.data.params["save_dir"] == str(save_dir)
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert [(m.step, m.value) for m in history] == [
        (record["epoch"], record["metrics"]["val/accuracy"]) for record in recorder.of("epoch")
    ]
    assert len(client.get_metric_history(run.info.run_id, "train/loss_step")) == 9
    assert [a.path for a in client.list_artifacts(run.info.run_id, "weights")] == [
        "weights/best.pt"
    ]
    local = client.download_artifacts(run.info.run_id, "weights/best.pt", str(tmp_path))
    assert Path(local).read_bytes() == (save_dir / "weights" / "best.pt").read_bytes()


@needs("mlflow")
def test_a_resumed_run_continues_the_same_mlflow_run(backend, tmp_path):
    from mlflow import MlflowClient

    save_dir = tmp_path / "train" / "exp"
    train(backend, save_dir, epochs=2, mlflow=True, checkpoint=True)
    train(backend, save_dir, epochs=3, mlflow=True, checkpoint=True,
          resume=str(save_dir / "weights" / "last.pt"))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'train' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("hookline").experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert steps == [1, 2, 3]


def wandb_records(run_file: str) -> list:
    """The records of a W&B transaction log, decoded with wandb's own protobuf schema.

    The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each with
    a 7-byte header (CRC-32C, length, type: 1 whole, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2

    data = Path(run_file).read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        if block - position % block < 7:
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        position += 7
        if kind == 0:
            break
        pending += data[position : position + length]
        position += length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


@needs("wandb")
def test_wandb_offline_run_holds_config_and_history(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    recorder = train(backend, tmp_path, wandb=True)
    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = wandb_records(run_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["epochs"] == 3
    assert config["log_every_n_steps"] == 5
    history = [
        {"/".join(item.nested_key) or item.key: json.loads(item.value_json)
         for item in r.history.item}
        for r in records if r.WhichOneof("record_type") == "history"
    ]
    epoch_rows = [row for row in history if "val/loss" in row]
    assert [(row["epoch"], row["val/loss"]) for row in epoch_rows] == [
        (record["epoch"], record["metrics"]["val/loss"]) for record in recorder.of("epoch")
    ]
    step_rows = [row for row in history if "train/loss_step" in row]
    assert [row["step"] for row in step_rows] == [r["step"] for r in recorder.of("train")]


@needs("comet_ml")
def test_comet_offline_archive_holds_parameters_and_metrics(backend, tmp_path):
    from comet_ml.offline import unzip_offline_archive

    recorder = train(backend, tmp_path, comet=True)
    (archive,) = (tmp_path / "comet").glob("*.zip")
    folder = Path(unzip_offline_archive(str(archive)))
    messages = [json.loads(line) for line in (folder / "messages.json").read_text().splitlines()]
    params = {
        m["payload"]["param"]["paramName"]: m["payload"]["param"]["paramValue"]
        for m in messages if m["type"] == "parameter_msg"
        and m["payload"]["param"]["source"] == "manual"
    }
    assert params["epochs"] == 3
    assert params["log_every_n_steps"] == 5
    metrics = [m["payload"]["metric"] for m in messages if m["type"] == "metric_msg"]
    assert [(m["epoch"], m["metricValue"]) for m in metrics if m["metricName"] == "val/loss"] \
        == [(record["epoch"], record["metrics"]["val/loss"]) for record in recorder.of("epoch")]
    assert [m["step"] for m in metrics if m["metricName"] == "train/loss_step"] == [
        record["step"] for record in recorder.of("train")
    ]


def test_a_tracker_whose_package_is_missing_fails_before_training(backend, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    manager = PluginManager()
    apply_flags(manager, {"wandb": True})
    trainer = Trainer(backend.make_task(), [LogRecorder()], manager=manager)
    with pytest.raises(UserError, match=r"wandb=True needs the 'wandb' package: pip install "
                                        r"'hookline\[wandb\]'"):
        trainer.fit(backend.batches(64, 16), epochs=1, save_dir=tmp_path, wandb=True)
    assert not list(tmp_path.iterdir())


@needs("wandb")
def test_a_tracker_mode_outside_its_choices_is_refused(backend, tmp_path):
    from hookline import SettingsError

    with pytest.raises(SettingsError, match="wandb_mode must be one of offline, online, disabled"):
        train(backend, tmp_path, wandb=True, wandb_mode="cloud")
    assert not (tmp_path / "wandb").exists()
